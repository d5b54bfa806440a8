//! Bench only: keeps events whose `level` is `error`, behind a typed ABI.

wit_bindgen::generate!({ world: "typed-filter", path: "wit" });

struct TypedFilter;

impl Guest for TypedFilter {
    fn keep_batch(events: Vec<Event>) -> Vec<bool> {
        events
            .iter()
            .map(|e| {
                e.fields
                    .iter()
                    .any(|f| f.key == "level" && f.value.eq_ignore_ascii_case("error"))
            })
            .collect()
    }
}

export!(TypedFilter);
