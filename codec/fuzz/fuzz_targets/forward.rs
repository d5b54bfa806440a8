//! The Fluent forward decoder over a stream: a message is either complete,
//! incomplete (then a longer prefix decides) or an error; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_codec::forward::{decode, Limits};
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 64 << 10,
        max_decompressed_bytes: 256 << 10,
    };
    let mut batch = BatchBuf::new();
    let mut at = 0;
    while at < data.len() {
        match decode(&data[at..], &limits, "tag", 0, &mut batch) {
            Ok(Some(m)) => {
                assert!(m.consumed > 0 && m.consumed <= data.len() - at);
                at += m.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
