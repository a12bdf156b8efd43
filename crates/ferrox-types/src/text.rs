//! Text that goes into line-based config files: Proxmox VE's `encode_text` for free text
//! (comments, descriptions) and the single-line check every other value must pass before a
//! serializer writes it. A newline in a value would otherwise start a new entry.

/// Bytes written as they are: printable ASCII except `%` and `:` (Proxmox VE's set).
fn is_safe(byte: u8) -> bool {
    matches!(byte, 0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e)
}

/// Percent-encodes control characters, non-ASCII bytes, `:` and `%`, as Proxmox VE's
/// `PVE::Tools::encode_text` does for comments in `user.cfg` and `ha/rules.cfg`.
pub fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_safe(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_text`]; malformed escapes are kept as written.
pub fn decode_text(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses control characters (newline, carriage return, NUL, ...): the value must stay on
/// its line. Returns the message a caller puts under the field's name.
pub fn check_single_line(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "value must not contain control characters (found {:?})",
            c
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_would_break_a_line_and_round_trips() {
        let text = "hi\nacl:1:/:bob@pve:Administrator: 50% ünï";
        let encoded = encode_text(text);
        assert!(!encoded.contains(['\n', ':']), "{encoded}");
        assert!(encoded.starts_with("hi%0Aacl%3A1"));
        assert_eq!(decode_text(&encoded), text);
        assert_eq!(encode_text("plain text (ok)"), "plain text (ok)");
        assert_eq!(decode_text("100%"), "100%");
        assert_eq!(decode_text("%zz"), "%zz");
    }

    #[test]
    fn single_line_refuses_control_characters() {
        assert!(check_single_line("a b-c").is_ok());
        assert!(check_single_line("x\nonboot: 1").is_err());
        assert!(check_single_line("x\ry").is_err());
        assert!(check_single_line("x\0").is_err());
    }
}
