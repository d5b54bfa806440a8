//! The `syslog` source: RFC 5424 and RFC 3164 messages over UDP (one a
//! datagram) or TCP (octet-counted or newline-framed, told apart per frame),
//! so rsyslog and syslog-ng forward to weir unchanged. Every event carries
//! the sender's address as `source_ip`.

use super::component::{BuildContext, Job, Source};
use super::net::{self, Conn, Net, Read, Stream};
use super::Batcher;
use crate::codec::syslog::{self, Framer};
use crate::codec::timestamp::now_ns;
use crate::config::{SyslogMode, SyslogSource};
use crate::topology::Shutdown;
use std::net::SocketAddr;
use weir_layout::{BatchBuf, Encoder, LayoutError};

impl Source for SyslogSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let net = cx.listener(&self.listen(), out, shutdown);
        if self.tls.is_some() && self.mode == SyslogMode::Udp {
            cx.problem(
                "tls",
                "TLS is for `mode = \"tcp\"`; syslog over UDP has none",
            );
        }
        let cfg = self.clone();
        Some(Box::new(move || run(net, &cfg)))
    }
}

pub fn run(net: Net, cfg: &SyslogSource) {
    let runner = net.clone();
    runner.block_on(async move {
        match cfg.mode {
            SyslogMode::Tcp => {
                let Some(listener) = net::bind(&net, &cfg.address).await else {
                    return;
                };
                let (max_frame, each) = (cfg.max_frame_bytes, net.clone());
                net::serve_tcp(&net, listener, move |stream, peer| {
                    connection(each.clone(), stream, peer, max_frame)
                })
                .await
            }
            SyslogMode::Udp => udp(&net, cfg).await,
        }
    });
}

async fn connection(net: Net, mut stream: Stream, peer: SocketAddr, max_frame: usize) {
    let mut framer = Framer::new(max_frame);
    let mut pending = net.batch();
    let mut conn = Conn::new(&net, peer);
    // The part of a frame not yet whole, out of the source's budget.
    let mut held = net.limits.buffered.hold();
    let ip = peer.ip().to_string();
    loop {
        let partial = framer.buffered() > 0;
        match conn.read(&mut stream, framer.spare(), partial).await {
            Read::Data(n) => framer.filled(n),
            Read::Eof => {
                if let Some(last) = framer.finish() {
                    decode(&net, &mut pending.batch, last, peer, &ip);
                }
                break;
            }
            Read::End => break,
        }
        while let Some(frame) = framer.next_frame() {
            conn.message_done();
            match frame {
                Ok(msg) => decode(&net, &mut pending.batch, msg, peer, &ip),
                Err(e @ syslog::FrameError::TooLong { .. }) => {
                    net.bad_input("frame_too_large", peer, &e.to_string())
                }
                Err(e) => net.bad_input("bad_frame", peer, &e.to_string()),
            }
            if pending.is_full() && pending.flush(Vec::new()).await.is_err() {
                return;
            }
        }
        if !held.set(framer.buffered()) {
            net.over_budget(peer, "part of a frame; closing");
            break;
        }
        if pending.flush(Vec::new()).await.is_err() {
            return;
        }
    }
    let _ = pending.flush(Vec::new()).await;
}

async fn udp(net: &Net, cfg: &SyslogSource) {
    let Some(socket) = net::bind_udp(net, &cfg.address).await else {
        return;
    };
    let mut buf = vec![0; 65536];
    let mut pending = net.batch();
    loop {
        tokio::select! {
            () = net.stopped() => break,
            r = socket.readable() => if let Err(e) = r {
                tracing::warn!(source = %net.name, "udp: {e}");
                continue;
            },
        }
        // Everything queued in the socket goes into one batch.
        while !pending.is_full() {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => {
                    crate::topology::Stats::add(&net.stats().bytes_in, n);
                    if n > cfg.max_frame_bytes {
                        let what = format!("a {n}-byte datagram, over max_frame_bytes");
                        net.bad_input("frame_too_large", peer, &what);
                        continue;
                    }
                    let msg = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
                    decode(net, &mut pending.batch, msg, peer, &peer.ip().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(source = %net.name, "udp: {e}");
                    break;
                }
            }
        }
        if pending.flush(Vec::new()).await.is_err() {
            return;
        }
    }
}

fn decode(net: &Net, batch: &mut BatchBuf, msg: &[u8], peer: SocketAddr, ip: &str) {
    let extra = |enc: &mut Encoder<'_>| -> Result<u32, LayoutError> {
        enc.key("source_ip")?;
        enc.str(ip)?;
        Ok(1)
    };
    if let Err(e) = syslog::decode(batch, msg, now_ns(), &extra) {
        net.bad_input("bad_message", peer, &e);
    }
}
