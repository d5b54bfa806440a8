//! Remote-write bodies (snappy, then protobuf): errors, never panics,
//! nothing decompressed past the size limit, and the events within their
//! decoded budget or nothing left behind.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let mut batch = BatchBuf::new();
    // Raw protobuf too, through a valid snappy frame, so the protobuf
    // decoder is reached without the fuzzer having to learn snappy.
    for body in [
        data.to_vec(),
        snap::raw::Encoder::new().compress_vec(data).unwrap(),
    ] {
        let before = batch.byte_len();
        match weir_codec::remote_write::decode(&body, 1 << 20, 8 << 10, &mut batch) {
            // One event (at most the decompressed body) may pass
            // the budget before it is checked.
            Ok(_) => assert!(batch.byte_len() - before <= (8 << 10) + (2 << 20)),
            Err(_) => assert_eq!(batch.byte_len(), before),
        }
    }
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
