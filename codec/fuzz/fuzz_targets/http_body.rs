//! The HTTP source's bodies: JSON lines or arrays, Elasticsearch `_bulk`
//! and Loki pushes never panic and write well-formed events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_codec::http_body;
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let mut batch = BatchBuf::new();
    let decoded = http_body::decode_json(data, "timestamp", 0, &|_| Ok(0), &mut batch);
    assert_eq!(decoded.events, batch.len());
    if let Ok(items) =
        http_body::decode_es_bulk(data, Some("logs"), "timestamp", 0, &|_| Ok(0), &mut batch)
    {
        let _ = http_body::es_bulk_response(&items, 1);
    }
    let _ = http_body::decode_loki_push(data, 0, &|_| Ok(0), &mut batch);
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
