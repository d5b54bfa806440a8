//! Short-slice comparisons a word at a time.
//!
//! Keys and most values are a few bytes long. Natively `==` on slices and
//! `is_ascii` are already fast, but in a Wasm guest they are a call to a byte
//! loop, and the host checks its deadline on every turn of a loop. Loading
//! overlapping words instead costs two or three loads and no loop below 16
//! bytes, which is most of what a filter reads.

#[inline(always)]
fn w64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn w32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn w16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// `a == b`, comparing the first and last word of each and whole words between.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1 => a[0] == b[0],
        2..=3 => w16(a, 0) == w16(b, 0) && w16(a, n - 2) == w16(b, n - 2),
        4..=7 => w32(a, 0) == w32(b, 0) && w32(a, n - 4) == w32(b, n - 4),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if w64(a, i) != w64(b, i) {
                    return false;
                }
                i += 8;
            }
            w64(a, n - 8) == w64(b, n - 8)
        }
    }
}

/// Whether every byte is below 0x80, by or-ing whole words and testing once.
#[inline]
pub(crate) fn ascii(b: &[u8]) -> bool {
    let n = b.len();
    let high = match n {
        0 => 0,
        1 => u64::from(b[0]),
        2..=3 => u64::from(w16(b, 0) | w16(b, n - 2)),
        4..=7 => u64::from(w32(b, 0) | w32(b, n - 4)),
        _ => {
            let mut acc = w64(b, n - 8);
            let mut i = 0;
            while i + 8 < n {
                acc |= w64(b, i);
                i += 8;
            }
            acc
        }
    };
    high & 0x8080_8080_8080_8080 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_agrees_with_slice_equality_at_every_length_and_position() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(same(a, a), "len {n}");
            assert!(!same(a, &base[..n + 1]), "len {n} vs {}", n + 1);
            for flip in 0..n {
                let mut b = a.to_vec();
                b[flip] ^= 0x20;
                assert!(!same(a, &b), "len {n}, byte {flip} differs");
            }
        }
    }

    #[test]
    fn ascii_finds_a_high_byte_anywhere() {
        for n in 0..40 {
            let s = vec![b'x'; n];
            assert!(ascii(&s), "len {n}");
            for at in 0..n {
                let mut t = s.clone();
                t[at] = 0xC3;
                assert!(!ascii(&t), "len {n}, high byte at {at}");
                t[at] = 0x80;
                assert!(!ascii(&t), "len {n}, 0x80 at {at}");
            }
        }
    }
}
