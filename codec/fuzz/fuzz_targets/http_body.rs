//! The HTTP source's bodies: JSON lines or arrays, Elasticsearch `_bulk`
//! and Loki pushes never panic, write well-formed events, and stay within
//! their decoded budget (or leave nothing behind).
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_codec::http_body;
use weir_layout::{BatchBuf, BatchView};

/// Small enough that the fuzzer reaches it; one event may pass it before
/// it is checked, and an event is at most a few times its input.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut batch = BatchBuf::new();
    let within = |batch: &BatchBuf, before: usize| {
        assert!(batch.byte_len() - before <= MAX + 16 * data.len() + 64);
    };
    let before = batch.byte_len();
    match http_body::decode_json(data, "timestamp", 0, &|_| Ok(0), MAX, &mut batch) {
        Ok(decoded) => assert_eq!(decoded.events, batch.len()),
        Err(_) => assert_eq!(batch.byte_len(), before),
    }
    within(&batch, before);
    let before = batch.byte_len();
    match http_body::decode_es_bulk(data, Some("logs"), "timestamp", 0, &|_| Ok(0), MAX, &mut batch)
    {
        Ok(items) => {
            let _ = http_body::es_bulk_response(&items, 1);
        }
        Err(_) => assert_eq!(batch.byte_len(), before),
    }
    within(&batch, before);
    let before = batch.byte_len();
    if http_body::decode_loki_push(data, 0, &|_| Ok(0), MAX, &mut batch).is_err() {
        assert_eq!(batch.byte_len(), before);
    }
    within(&batch, before);
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
