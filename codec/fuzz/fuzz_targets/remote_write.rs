//! Remote-write bodies (snappy, then protobuf): errors, never panics, and
//! nothing decoded past the size limit.
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
        let _ = weir_codec::remote_write::decode(&body, 1 << 20, &mut batch);
    }
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
