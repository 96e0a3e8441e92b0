//! Failure fingerprints: the reason with ids and numbers normalised away, so
//! the same failure of different messages groups together.

/// `"gave up after 5 attempts: image 0193…a7b not found"` →
/// `"gave up after # attempts: image <id> not found"`.
pub fn fingerprint(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let chars: Vec<char> = reason.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if let Some(len) = uuid_at(&chars[i..]) {
            out.push_str("<id>");
            i += len;
        } else if chars[i].is_ascii_digit() {
            out.push('#');
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Length of a hyphenated UUID starting at the front of `chars`, if any.
fn uuid_at(chars: &[char]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (n, group) in GROUPS.iter().enumerate() {
        for _ in 0..*group {
            if !chars.get(at)?.is_ascii_hexdigit() {
                return None;
            }
            at += 1;
        }
        if n < 4 {
            if *chars.get(at)? != '-' {
                return None;
            }
            at += 1;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_numbers_are_normalised() {
        assert_eq!(
            fingerprint("gave up after 5 attempts: image 01937a4e-8b2c-7000-8000-00000000000a not found (took 1.5s)"),
            "gave up after # attempts: image <id> not found (took #s)"
        );
        assert_eq!(
            fingerprint("unknown event type `user.created`"),
            "unknown event type `user.created`"
        );
    }
}
