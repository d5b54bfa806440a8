//! Syslog framing and parsing: any bytes, split anywhere, give frames no
//! longer than the limit and well-formed events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_codec::syslog::{decode, Framer};
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let max = 256;
    let mut framer = Framer::new(max);
    let mut batch = BatchBuf::new();
    let step = usize::from(split).max(1);
    for chunk in data.chunks(step) {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            if let Ok(msg) = frame {
                assert!(msg.len() <= max);
                let _ = decode(&mut batch, msg, 0, &|_| Ok(0));
            }
        }
        assert!(framer.buffered() <= max + 16);
    }
    if let Some(last) = framer.finish() {
        let _ = decode(&mut batch, last, 0, &|_| Ok(0));
    }
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
