//! A row's ids as bytes: ascending, each the LEB128 difference from the one before
//! (the first from the row's `first_id`), one or two bytes an id for the densities a
//! log has.

/// The bytes of `ids`, ascending, from `first`.
pub fn encode(first: i64, ids: &[i64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(ids.len() * 2);
    let mut previous = first;
    for &id in ids {
        let mut difference = id.abs_diff(previous);
        previous = id;
        loop {
            let low = (difference & 0x7f) as u8;
            difference >>= 7;
            if difference == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
    }
    bytes
}

/// The ids of `bytes` written from `first`, handed to `each`; `None` when the bytes are
/// torn (a difference cut off, or one past the id range).
pub fn decode(first: i64, bytes: &[u8], mut each: impl FnMut(i64)) -> Option<()> {
    let mut previous = first;
    let mut difference: u64 = 0;
    let mut shift = 0;
    for &byte in bytes {
        if shift >= 64 {
            return None;
        }
        difference |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            shift += 7;
            continue;
        }
        previous = previous.checked_add_unsigned(difference)?;
        each(previous);
        (difference, shift) = (0, 0);
    }
    (shift == 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(first: i64, bytes: &[u8]) -> Option<Vec<i64>> {
        let mut ids = Vec::new();
        decode(first, bytes, |id| ids.push(id)).map(|()| ids)
    }

    #[test]
    fn ids_come_back_as_written() {
        let ids = [100, 101, 227, 228, 100_000, 65_636 * 1000, i64::MAX];
        let bytes = encode(100, &ids);
        assert_eq!(decoded(100, &bytes), Some(ids.to_vec()));
        assert_eq!(&bytes[..3], &[0, 1, 126]);
        assert_eq!(decoded(7, &encode(7, &[])), Some(vec![]));
    }

    #[test]
    fn torn_bytes_are_refused() {
        let bytes = encode(0, &[1, 300]);
        assert_eq!(decoded(0, &bytes[..bytes.len() - 1]), None);
        assert_eq!(decoded(i64::MAX, &[1]), None);
        assert_eq!(decoded(0, &[0xff; 11]), None);
    }
}
