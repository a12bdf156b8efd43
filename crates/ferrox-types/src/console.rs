//! A guest's display and serial ports as its config names them: `vga:` (Proxmox VE's
//! `[type=]<enum>[,memory=<MiB>]`) and `serial0..3:` (`socket` or a host device). Parsed
//! here once for the config check, the QEMU command line and the console endpoints.

use crate::property_string::PropertyString;

/// The emulated graphics card (`vga: type`), Proxmox VE's default being `std`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgaType {
    Std,
    Cirrus,
    Vmware,
    Virtio,
    Qxl,
    /// No graphics card at all.
    None,
    /// No graphics card; the console is this serial port (`serial0`...).
    Serial(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vga {
    pub kind: VgaType,
    /// Video memory in MiB (`memory=`, 4..=512).
    pub memory_mib: Option<u32>,
}

impl Default for Vga {
    fn default() -> Vga {
        Vga {
            kind: VgaType::Std,
            memory_mib: None,
        }
    }
}

impl Vga {
    /// Parses a `vga:` value; the error names what is wrong in it.
    pub fn parse(value: &str) -> Result<Vga, String> {
        let p = PropertyString::parse(value).map_err(|e| e.to_string())?;
        let mut vga = Vga::default();
        for (key, v) in &p.items {
            match key.as_deref() {
                None | Some("type") => {
                    vga.kind = match v.as_str() {
                        "std" => VgaType::Std,
                        "cirrus" => VgaType::Cirrus,
                        "vmware" => VgaType::Vmware,
                        "virtio" => VgaType::Virtio,
                        "qxl" => VgaType::Qxl,
                        "none" => VgaType::None,
                        s => match s.strip_prefix("serial").and_then(|i| i.parse::<u8>().ok()) {
                            Some(i) if i <= 3 => VgaType::Serial(i),
                            _ => {
                                return Err(format!(
                                    "unknown display type '{v}' (std, cirrus, vmware, virtio, qxl, none, serial0..serial3)"
                                ))
                            }
                        },
                    }
                }
                Some("memory") => {
                    let mib = v
                        .parse::<u32>()
                        .ok()
                        .filter(|m| (4..=512).contains(m))
                        .ok_or_else(|| format!("memory: '{v}' is not a number of MiB from 4 to 512"))?;
                    vga.memory_mib = Some(mib);
                }
                Some("clipboard") if v == "vnc" => {}
                Some(other) => return Err(format!("unknown property '{other}'")),
            }
        }
        Ok(vga)
    }

    /// Whether the guest has a graphics card a VNC client can see.
    pub fn has_display(&self) -> bool {
        !matches!(self.kind, VgaType::None | VgaType::Serial(_))
    }
}

/// A serial port of the guest (`serialN:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialPort {
    /// A unix socket on the node: what `termproxy` connects the serial console to.
    Socket,
}

impl SerialPort {
    /// Parses a `serialN:` value. Host devices (`/dev/ttyS0`) are refused: passing a host's
    /// port through ties the guest to that host and is not supported yet.
    pub fn parse(value: &str) -> Result<SerialPort, String> {
        match value {
            "socket" => Ok(SerialPort::Socket),
            v if v.starts_with("/dev/") => {
                Err(format!("host device '{v}' is not supported: use 'socket'"))
            }
            v => Err(format!("'{v}' is neither 'socket' nor a host device")),
        }
    }
}

/// `serial0`..`serial3`: the index of a serial port key.
pub fn serial_index(key: &str) -> Option<u8> {
    key.strip_prefix("serial")
        .and_then(|i| i.parse::<u8>().ok())
        .filter(|i| *i <= 3 && key.len() == 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vga_values_as_proxmox_writes_them() {
        assert_eq!(Vga::parse("std").unwrap(), Vga::default());
        let v = Vga::parse("type=virtio,memory=32").unwrap();
        assert_eq!((v.kind, v.memory_mib), (VgaType::Virtio, Some(32)));
        assert_eq!(Vga::parse("serial0").unwrap().kind, VgaType::Serial(0));
        assert!(!Vga::parse("none").unwrap().has_display());
        assert!(Vga::parse("serial4").unwrap_err().contains("serial4"));
        assert!(Vga::parse("std,memory=1024")
            .unwrap_err()
            .contains("memory"));
        assert!(Vga::parse("std,foo=1").unwrap_err().contains("foo"));
    }

    #[test]
    fn serial_ports() {
        assert_eq!(SerialPort::parse("socket").unwrap(), SerialPort::Socket);
        assert!(SerialPort::parse("/dev/ttyS0")
            .unwrap_err()
            .contains("/dev/ttyS0"));
        assert!(SerialPort::parse("pipe").is_err());
        assert_eq!(serial_index("serial2"), Some(2));
        assert_eq!(serial_index("serial4"), None);
        assert_eq!(serial_index("serial10"), None);
    }
}
