//! The fast path for the lines most logs are made of: one flat JSON object
//! whose values are strings without escapes, numbers, booleans or null.
//!
//! serde_json spends most of a log line's decode checking UTF-8 string by
//! string and driving the visitor; this scans the line once. It decodes a
//! line exactly as the serde path does or not at all: anything else (an
//! escape, a nested value, an integer past i64, a grammar error, a field
//! the layout refuses) hands the line over untouched, and the serde path
//! decodes it or reports what is wrong and at which column.

use super::{timestamp, Extra};
use weir_layout::{BatchBuf, Encoder, Value};

/// Appends the event for `line` and returns `Some` with what the serde
/// path would return; `None` (nothing appended) when the line is not one
/// this path decodes.
pub(super) fn decode(
    batch: &mut BatchBuf,
    line: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
) -> Option<Result<(), String>> {
    let start = batch.begin_log(arrival_ns);
    let mut enc = batch.encoder();
    let Some((count, ts)) = fields(&mut enc, line, timestamp_field) else {
        batch.abort(start);
        return None;
    };
    let count = match extra(&mut enc) {
        Ok(n) => count + n,
        Err(e) => {
            batch.abort(start);
            return Some(Err(e.to_string()));
        }
    };
    if let Some(ts) = ts {
        batch.set_timestamp(start, ts);
    }
    Some(batch.end_log(start, count).map_err(|e| e.to_string()))
}

/// Writes the object's fields: how many, and the event time from the
/// first `timestamp_field` whose value is one.
fn fields(enc: &mut Encoder<'_>, b: &[u8], timestamp_field: &str) -> Option<(u32, Option<i64>)> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let (mut count, mut ts) = (0, None);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (key, next) = string(b, i + 1)?;
            i = ws(b, next);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let (value, next) = value(b, ws(b, i + 1))?;
            enc.key(key).ok()?;
            match value {
                Value::Str(s) => enc.str(s).ok()?,
                Value::Int(n) => enc.int(n),
                Value::Float(f) => enc.float(f),
                Value::Bool(v) => enc.bool(v),
                _ => enc.null(),
            }
            count += 1;
            if ts.is_none() && !timestamp_field.is_empty() && key == timestamp_field {
                ts = timestamp::from_value(value);
            }
            i = ws(b, next);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (ws(b, i) == b.len()).then_some((count, ts))
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string starting at `from` (after its quote), and the index after
/// its closing quote; `None` if it has an escape or a control character,
/// or is not UTF-8.
// Inlined, as are the others: returned through memory, their results
// stalled the caller on a store-forwarding miss for a fifth of the decode.
#[inline(always)]
fn string(b: &[u8], from: usize) -> Option<(&str, usize)> {
    let mut j = from;
    // Eight bytes at a time to the first that is not plain ASCII text.
    while let Some(word) = b.get(j..j + 8) {
        let flagged = special(u64::from_le_bytes(word.try_into().ok()?));
        if flagged != 0 {
            j += (flagged.trailing_zeros() / 8) as usize;
            break;
        }
        j += 8;
    }
    let mut ascii = true;
    loop {
        match *b.get(j)? {
            b'"' => break,
            b'\\' => return None,
            c if c < 0x20 => return None,
            c => {
                ascii &= c < 0x80;
                j += 1;
            }
        }
    }
    let bytes = &b[from..j];
    let s = match ascii {
        // SAFETY: ASCII bytes are UTF-8.
        true => unsafe { std::str::from_utf8_unchecked(bytes) },
        false => std::str::from_utf8(bytes).ok()?,
    };
    Some((s, j + 1))
}

/// The high bit of each byte of `w` that is `"`, `\\`, a control character
/// or not ASCII; of the bytes above the first such one, others may be set.
#[inline]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero(w ^ (ONES * b'"' as u64));
    let backslash = zero(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (quote | backslash | control | w) & (ONES * 0x80)
}

/// The scalar value starting at `i`, and the index after it.
#[inline(always)]
fn value(b: &[u8], i: usize) -> Option<(Value<'_>, usize)> {
    let literal = |word: &[u8], v: Value<'static>| {
        b.get(i..i + word.len())
            .is_some_and(|w| w == word)
            .then_some((v, i + word.len()))
    };
    match *b.get(i)? {
        b'"' => string(b, i + 1).map(|(s, next)| (Value::Str(s), next)),
        b't' => literal(b"true", Value::Bool(true)),
        b'f' => literal(b"false", Value::Bool(false)),
        b'n' => literal(b"null", Value::Null),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

/// A JSON number: an integer when it has no fraction or exponent and fits
/// in i64 (as serde_json reads it), else a finite float.
#[inline(always)]
fn number(b: &[u8], i: usize) -> Option<(Value<'static>, usize)> {
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let negative = b[i] == b'-';
    let int_start = i + negative as usize;
    let mut j = digits(int_start);
    // One digit at least, and no leading zero.
    if j == int_start || (b[int_start] == b'0' && j > int_start + 1) {
        return None;
    }
    let mut float = false;
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return None;
        }
        (j, float) = (k, true);
    }
    if let Some(b'e' | b'E') = b.get(j) {
        let sign = matches!(b.get(j + 1), Some(b'+' | b'-')) as usize;
        let k = digits(j + 1 + sign);
        if k == j + 1 + sign {
            return None;
        }
        (j, float) = (k, true);
    }
    // SAFETY: `b[i..j]` was checked above to be ASCII digits and signs.
    let n = unsafe { std::str::from_utf8_unchecked(&b[i..j]) };
    let value = match (float, n) {
        (true, _) => Value::Float(n.parse::<f64>().ok().filter(|f| f.is_finite())?),
        // serde_json reads a negative zero integer as a float.
        (false, "-0") => Value::Float(-0.0),
        (false, _) => Value::Int(n.parse::<i64>().ok()?),
    };
    Some((value, j))
}

#[cfg(test)]
mod tests {
    use super::super::decode_object;
    use weir_layout::BatchBuf;

    /// A decoded event's bytes, or the error.
    type Decoded = Result<Vec<u8>, String>;

    /// The event (and error) of `line` by the fast path, where it takes
    /// the line, and by serde_json alone.
    fn both(line: &[u8]) -> (Option<Decoded>, Decoded) {
        let mut fast = BatchBuf::new();
        let taken = super::decode(&mut fast, line, "ts", 7, &|_| Ok(0))
            .map(|r| r.map(|()| fast.as_bytes().to_vec()));
        let mut slow = BatchBuf::new();
        let serde = super::super::decode_serde(&mut slow, line, "ts", 7, &|_| Ok(0))
            .map(|()| slow.as_bytes().to_vec());
        (taken, serde)
    }

    #[test]
    fn decodes_flat_lines_byte_for_byte_as_serde_json_does() {
        let taken = [
            &br#"{"ts":"2024-05-01T12:00:00.5Z","level":"error","n":-12,"ok":true,"no":false,"x":null}"#[..],
            r#"  { "a" : 1.5e3 , "b":"café", "c": 0, "d": -0, "e": -0.0, "f": 1E-2 }  "#.as_bytes(),
            br#"{"ts":1714564800,"ts":"2024-05-01T12:00:00Z","big":9223372036854775807}"#,
            br#"{"ts":"not a time","ts":1714564800.25}"#,
            b"{}",
            r#"{"long":"eight by eight bytes, then é, then more: ümlaut"}"#.as_bytes(),
        ];
        for line in taken {
            let (fast, serde) = both(line);
            let text = String::from_utf8_lossy(line);
            assert_eq!(fast, Some(serde), "{text}");
        }
        // Left to serde_json, which decodes or refuses them.
        let handed_over = [
            &br#"{"esc":"a\"b"}"#[..],
            br#"{"nested":{"a":1}}"#,
            br#"{"list":[1]}"#,
            br#"{"big":9223372036854775808}"#,
            br#"{"inf":1e400}"#,
            br#"{"lead":01}"#,
            br#"{"frac":1.}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":1"#,
            b"{\"tab\":\"a\tb\"}",
            br#"{"long":"eight by eight bytes, then an escape \" here"}"#,
            b"{\"long\":\"eight by eight bytes, then a control \x01 here\"}",
            b"{\"long\":\"eight by eight bytes, then a bad \xc3 byte\"}",
            b"{\"bad\":\"\xff\"}",
            b"[1]",
            b"",
        ];
        for line in handed_over {
            let (fast, _) = both(line);
            assert_eq!(fast, None, "{}", String::from_utf8_lossy(line));
        }
        // And the public path decodes those serde_json can.
        let mut b = BatchBuf::new();
        decode_object(
            &mut b,
            br#"{"esc":"a\"b","big":9223372036854775808}"#,
            "ts",
            7,
        )
        .unwrap();
        assert_eq!(b.get(0).unwrap().get_str("esc"), Some("a\"b"));
    }
}
