//! The Fluent forward decoder over a stream: a message is either complete,
//! incomplete (then a longer prefix decides) or an error; never a panic.
//! Read in two pieces, a message is found where a whole read finds it, and
//! what a message adds to the batch stays within `max_decoded_bytes`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_codec::forward::{decode, decode_from, Limits, Scan};
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 64 << 10,
        max_decompressed_bytes: 256 << 10,
        max_decoded_bytes: 128 << 10,
    };
    let mut batch = BatchBuf::new();
    let mut at = 0;
    while at < data.len() {
        let before = batch.byte_len();
        let whole = decode(&data[at..], &limits, "tag", 0, &mut batch);
        // One event may pass the budget before it is checked.
        assert!(batch.byte_len() - before <= limits.max_decoded_bytes + 16 * limits.max_message_bytes);
        let mut scan = Scan::default();
        let half = (data.len() - at) / 2;
        let mut again = BatchBuf::new();
        let first = decode_from(&mut scan, &data[at..at + half], &limits, "tag", 0, &mut again);
        if let Ok(None) = first {
            let second = decode_from(&mut scan, &data[at..], &limits, "tag", 0, &mut again);
            assert_eq!(
                second.as_ref().ok().map(|m| m.as_ref().map(|m| m.consumed)),
                whole.as_ref().ok().map(|m| m.as_ref().map(|m| m.consumed)),
            );
        }
        match whole {
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
