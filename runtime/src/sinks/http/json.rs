//! The generic `http` sink: each batch as NDJSON or one JSON array.

use super::Api;
use crate::codec::json_encode;
use crate::config::BodyEncoding;
use weir_layout::BatchBuf;

pub struct Json {
    pub encoding: BodyEncoding,
}

impl Json {
    pub fn content_type(&self) -> &'static str {
        match self.encoding {
            BodyEncoding::Json => "application/json",
            BodyEncoding::Ndjson => "application/x-ndjson",
        }
    }
}

impl Api for Json {
    fn encode(&mut self, batch: &BatchBuf, body: &mut Vec<u8>) -> usize {
        body.clear();
        match self.encoding {
            BodyEncoding::Ndjson => json_encode::write_lines(body, batch),
            BodyEncoding::Json => {
                body.push(b'[');
                for (i, event) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    json_encode::write_event(body, &event);
                }
                body.push(b']');
            }
        }
        batch.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_an_array_or_lines() {
        let mut b = BatchBuf::new();
        b.log(0).field("n", 1).finish().unwrap();
        b.log(0).field("n", 2).finish().unwrap();
        let mut body = Vec::new();
        let mut json = Json {
            encoding: BodyEncoding::Json,
        };
        assert_eq!(json.encode(&b, &mut body), 2);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!([{"n": 1}, {"n": 2}]));
        json.encoding = BodyEncoding::Ndjson;
        json.encode(&b, &mut body);
        assert_eq!(body, b"{\"n\":1}\n{\"n\":2}\n");
    }
}
