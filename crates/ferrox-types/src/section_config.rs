//! Proxmox VE section-config text: `type: id` header lines followed by tab-indented
//! `key value` property lines, sections separated by blank lines, `#` comments.

use sha1::{Digest, Sha1};

/// One `type: id` block with its properties in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub section_type: String,
    pub id: String,
    /// 1-based line of the header, for error messages.
    pub line: usize,
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SectionConfigError {
    #[error("line {line}: property outside of a section: '{text}'")]
    PropertyOutsideSection { line: usize, text: String },
    #[error("line {line}: malformed section header '{text}' (expected 'type: id')")]
    MalformedHeader { line: usize, text: String },
    #[error("section '{id}': property '{key}' given twice")]
    DuplicateProperty { id: String, key: String },
    #[error("section '{id}': {message}")]
    Invalid { id: String, message: String },
}

/// The digest Proxmox VE reports for a config file: SHA-1 of its raw bytes, in hex.
pub fn digest(raw: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(raw.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits section-config text into sections. Values are kept as text; each file type
/// interprets its own keys.
pub fn parse(raw: &str) -> Result<Vec<Section>, SectionConfigError> {
    parse_with_lists(raw, &[])
}

/// As `parse`, where the keys in `lists` are array properties that may repeat (one line
/// per value, as Proxmox VE writes `target` in `notifications.cfg`).
pub fn parse_with_lists(raw: &str, lists: &[&str]) -> Result<Vec<Section>, SectionConfigError> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_section = false;
    for (index, line) in raw.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.is_empty() {
            in_section = false;
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        if indented {
            let Some(section) = sections.last_mut().filter(|_| in_section) else {
                return Err(SectionConfigError::PropertyOutsideSection {
                    line: line_no,
                    text: trimmed.to_string(),
                });
            };
            let (key, value) = match trimmed.split_once(char::is_whitespace) {
                Some((k, v)) => (k.to_string(), v.trim().to_string()),
                None => (trimmed.to_string(), String::new()),
            };
            if !lists.contains(&key.as_str()) && section.properties.iter().any(|(k, _)| *k == key) {
                return Err(SectionConfigError::DuplicateProperty {
                    id: section.id.clone(),
                    key,
                });
            }
            section.properties.push((key, value));
        } else {
            let Some((section_type, id)) = trimmed.split_once(':') else {
                return Err(SectionConfigError::MalformedHeader {
                    line: line_no,
                    text: trimmed.to_string(),
                });
            };
            let (section_type, id) = (section_type.trim(), id.trim());
            if section_type.is_empty() || id.is_empty() || id.contains(char::is_whitespace) {
                return Err(SectionConfigError::MalformedHeader {
                    line: line_no,
                    text: trimmed.to_string(),
                });
            }
            sections.push(Section {
                section_type: section_type.to_string(),
                id: id.to_string(),
                line: line_no,
                properties: Vec::new(),
            });
            in_section = true;
        }
    }
    Ok(sections)
}

/// A `\tkey value` property line. Every value is checked before it gets here; a control
/// character that slipped through is percent-encoded rather than allowed to end the line
/// and add a property or a section.
pub fn property_line(key: &str, value: &str) -> String {
    let value = if value.chars().any(char::is_control) {
        crate::text::encode_text(value)
    } else {
        value.to_string()
    };
    format!("\t{key} {value}\n")
}

/// A `type: id` header line, with the same guard as [`property_line`].
pub fn header_line(section_type: &str, id: &str) -> String {
    let clean = |t: &str| {
        if t.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
        {
            crate::text::encode_text(t).replace(' ', "%20")
        } else {
            t.to_string()
        }
    };
    format!("{}: {}\n", clean(section_type), clean(id))
}

/// Parses a section-config boolean: a bare key means true, as in Proxmox VE.
/// The error of section `id` with `message` (the parsers of every section-config file).
pub fn invalid(id: &str, message: String) -> SectionConfigError {
    SectionConfigError::Invalid {
        id: id.to_string(),
        message,
    }
}

pub fn parse_bool(id: &str, key: &str, value: &str) -> Result<bool, SectionConfigError> {
    match value {
        "" | "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        other => Err(SectionConfigError::Invalid {
            id: id.to_string(),
            message: format!("property '{key}': '{other}' is not a boolean"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_and_comments() {
        let raw = "# c\nnode-affinity: a\n\tresources vm:1\n\tstrict\n\ngroup: g\n\tnodes n1\n";
        let s = parse(raw).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].properties[1], ("strict".into(), "".into()));
        assert_eq!(s[1].section_type, "group");
    }

    #[test]
    fn rejects_orphan_property() {
        assert!(matches!(
            parse("\tresources vm:1\n"),
            Err(SectionConfigError::PropertyOutsideSection { line: 1, .. })
        ));
    }

    #[test]
    fn property_lines_cannot_add_lines() {
        let line = property_line("nodes", "n1\n\tshared 1\ndir: inj2");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert_eq!(property_line("path", "/srv"), "\tpath /srv\n");
        assert_eq!(header_line("dir", "x\ny").matches('\n').count(), 1);
    }

    #[test]
    fn digest_is_sha1_hex() {
        assert_eq!(digest(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
