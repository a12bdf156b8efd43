//! Proxmox VE property strings: `key=value,key=value`, where the first item may omit its
//! key and then belongs to the format's default key (`virtio=BC:24:11:..,bridge=vmbr0`,
//! `local:vm-100-disk-0,size=32G`, `order=scsi0;net0`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyString {
    /// Items in the order written; the default key's item carries `None` as key.
    pub items: Vec<(Option<String>, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyStringError {
    #[error("empty item in '{0}'")]
    EmptyItem(String),
    #[error("key '{key}' given twice in '{text}'")]
    Duplicate { key: String, text: String },
    #[error("value without key after the first item in '{0}'")]
    UnkeyedLater(String),
}

impl PropertyString {
    pub fn parse(text: &str) -> Result<Self, PropertyStringError> {
        let mut items = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, raw) in text.split(',').enumerate() {
            if raw.is_empty() {
                return Err(PropertyStringError::EmptyItem(text.to_string()));
            }
            let (key, value) = match raw.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    (Some(k.to_string()), v.to_string())
                }
                _ if i == 0 => (None, raw.to_string()),
                _ => return Err(PropertyStringError::UnkeyedLater(text.to_string())),
            };
            if let Some(k) = &key {
                if seen.insert(k.clone(), ()).is_some() {
                    return Err(PropertyStringError::Duplicate {
                        key: k.clone(),
                        text: text.to_string(),
                    });
                }
            }
            items.push((key, value));
        }
        Ok(PropertyString { items })
    }

    /// The value of `key`, or of the unkeyed first item when `key` is the default key.
    pub fn get(&self, key: &str, default_key: Option<&str>) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| match k {
                Some(k) => k == key,
                None => default_key == Some(key),
            })
            .map(|(_, v)| v.as_str())
    }

    /// Sets the value of a disk's default key `file`, written first and without its key
    /// (`local:100/vm-100-disk-0.qcow2,size=4G`), as Proxmox VE writes drives.
    pub fn set_file(&mut self, volid: &str) {
        self.items
            .retain(|(k, _)| k.is_some() && k.as_deref() != Some("file"));
        self.items.insert(0, (None, volid.to_string()));
    }

    pub fn remove(&mut self, key: &str) {
        self.items.retain(|(k, _)| k.as_deref() != Some(key));
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self
            .items
            .iter_mut()
            .find(|(k, _)| k.as_deref() == Some(key))
        {
            Some(item) => item.1 = value.to_string(),
            None => self.items.push((Some(key.to_string()), value.to_string())),
        }
    }
}

impl std::fmt::Display for PropertyString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match k {
                Some(k) => write!(f, "{k}={v}")?,
                None => f.write_str(v)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_and_round_trip() {
        let p = PropertyString::parse("local-lvm:vm-100-disk-0,size=32G,discard=on").unwrap();
        assert_eq!(p.get("file", Some("file")), Some("local-lvm:vm-100-disk-0"));
        assert_eq!(p.get("size", Some("file")), Some("32G"));
        assert_eq!(p.to_string(), "local-lvm:vm-100-disk-0,size=32G,discard=on");
        let net = PropertyString::parse("virtio=BC:24:11:00:00:01,bridge=vmbr0").unwrap();
        assert_eq!(net.get("virtio", None), Some("BC:24:11:00:00:01"));
        assert_eq!(net.get("bridge", None), Some("vmbr0"));
    }

    #[test]
    fn errors() {
        assert!(PropertyString::parse("a=1,,b=2").is_err());
        assert!(PropertyString::parse("a=1,a=2").is_err());
        assert!(PropertyString::parse("a=1,plain").is_err());
    }
}
