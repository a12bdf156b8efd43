//! Debian version ordering (`dpkg --compare-versions`), used to compare pve-manager
//! versions such as `9.0.0~16` or `7.4-4`. Written here because the comparison is a dozen
//! lines and no small, maintained crate provides exactly dpkg's order.

use std::cmp::Ordering;

fn order(c: Option<char>) -> i32 {
    match c {
        None => 0,
        Some('~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == '0' {
            i += 1;
        }
        while j < b.len() && b[j] == '0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = a[i] as i32 - b[j] as i32;
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

/// Compares two Debian version strings (`[epoch:]upstream[-revision]`).
pub fn compare(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u.to_string(), r.to_string()),
            None => (epoch, rest.to_string(), String::new()),
        }
    };
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(&ua, &ub))
        .then_with(|| compare_part(&ra, &rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_order() {
        assert!(compare("9.1.2", "9.0.0~16").is_gt());
        assert!(compare("9.0.0~16", "9.0.0~16").is_eq());
        assert!(compare("9.0.0~15", "9.0.0~16").is_lt());
        assert!(compare("9.0.0~17", "9.0.0~16").is_gt());
        assert!(compare("9.0.0", "9.0.0~16").is_gt());
        assert!(compare("8.4.1", "9.0.0~16").is_lt());
        assert!(compare("7.4-4", "9.0.0~16").is_lt());
        assert!(compare("9.0.0~2", "9.0.0~16").is_lt());
    }
}
