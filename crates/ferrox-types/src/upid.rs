//! Proxmox VE task ids (UPIDs): `UPID:node:pid:pstart:starttime:type:id:user:` with pid,
//! pstart and starttime in upper-case hex, and the trailing colon clients rely on.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    /// Process start time in clock ticks since boot (identifies the pid's incarnation).
    pub pstart: u64,
    /// Unix seconds.
    pub starttime: u32,
    pub task_type: String,
    /// The object the task works on, e.g. a vmid; may be empty.
    pub id: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse worker upid '{0}'")]
pub struct UpidError(pub String);

fn valid_node(node: &str) -> bool {
    let b = node.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn valid_field(text: &str, allow_empty: bool) -> bool {
    (allow_empty || !text.is_empty())
        && !text.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.task_type, self.id, self.user
        )
    }
}

impl FromStr for Upid {
    type Err = UpidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || UpidError(text.to_string());
        let fields: Vec<&str> = text.split(':').collect();
        // Nine fields: "UPID", eight values, and the empty string after the trailing colon.
        if fields.len() != 9 || fields[0] != "UPID" || !fields[8].is_empty() {
            return Err(bad());
        }
        let hex = |s: &str, min: usize, max: usize| -> Result<u64, UpidError> {
            if s.len() < min || s.len() > max || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u64::from_str_radix(s, 16).map_err(|_| bad())
        };
        let upid = Upid {
            node: fields[1].to_string(),
            pid: u32::try_from(hex(fields[2], 8, 8)?).map_err(|_| bad())?,
            pstart: hex(fields[3], 8, 9)?,
            starttime: u32::try_from(hex(fields[4], 8, 8)?).map_err(|_| bad())?,
            task_type: fields[5].to_string(),
            id: fields[6].to_string(),
            user: fields[7].to_string(),
        };
        if !valid_node(&upid.node)
            || !valid_field(&upid.task_type, false)
            || !valid_field(&upid.id, true)
            || !valid_field(&upid.user, false)
        {
            return Err(bad());
        }
        Ok(upid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_spec_example() {
        let text = "UPID:pve1:000003E8:00001B58:6B02D736:qmshutdown:100:root@pam:";
        let upid: Upid = text.parse().unwrap();
        assert_eq!(upid.node, "pve1");
        assert_eq!(upid.pid, 1000);
        assert_eq!(upid.pstart, 7000);
        assert_eq!(upid.task_type, "qmshutdown");
        assert_eq!(upid.id, "100");
        assert_eq!(upid.user, "root@pam");
        assert_eq!(upid.to_string(), text);
    }

    #[test]
    fn empty_id_and_nine_digit_pstart() {
        let upid: Upid = "UPID:n-1:00000001:123456789:00000002:aptupdate::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(upid.id, "");
        assert_eq!(upid.pstart, 0x1_2345_6789);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "UPID:pve1:000003E8:00001B58:6B02D736:qmstart:100:root@pam",
            "UPID:-pve:000003E8:00001B58:6B02D736:qmstart:100:root@pam:",
            "UPID:pve1:3E8:00001B58:6B02D736:qmstart:100:root@pam:",
            "UPID:pve1:000003E8:00001B58:6B02D736:qm start:100:root@pam:",
            "TASK:pve1:000003E8:00001B58:6B02D736:qmstart:100:root@pam:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }
}
