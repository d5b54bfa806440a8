//! The Prometheus text and OpenMetrics parser never panics and writes only
//! well-formed events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_layout::{BatchBuf, BatchView};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let mut batch = BatchBuf::new();
    let labels = [("instance", "host:9100"), ("job", "node")];
    let parsed = weir_codec::prom_text::parse(text, mode & 1 == 1, 0, &labels, &mut batch);
    assert!(parsed.first_errors.len() <= parsed.errors);
    BatchView::new(batch.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
});
