//! A tansu Kafka-protocol broker on a free loopback port, stopped on drop:
//! for the Kafka tests and the Kafka bench (which includes this file).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tansu {
    child: Child,
    pub addr: String,
}

/// `WEIR_TANSU`, else what `scripts/tansu` installs.
fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_TANSU") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/tansu");
    assert!(p.is_file(), "tansu is missing: run scripts/tansu first");
    p
}

impl Tansu {
    pub fn start() -> Tansu {
        let addr = format!("127.0.0.1:{}", super::free_port());
        let url = format!("tcp://{addr}");
        // In memory: the prebuilt tansu has no file storage, and nothing
        // here outlives the broker.
        let child = Command::new(bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let t = Tansu { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&t.addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(bin())
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
