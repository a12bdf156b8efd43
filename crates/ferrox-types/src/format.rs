//! The formats of identifiers and short values that end up in config files, paths and
//! command lines (Proxmox VE's `pve-userid`, `pve-realm`, `pve-storage-id`, `pve-tag`, ...).
//! The API checks parameters with these, and the parsers check files with the same
//! functions, so a value that passed one is never refused by the other.
//!
//! Each check returns the message to report under the parameter's name.

use crate::text::check_single_line;

fn chars_ok(value: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(first) && chars.all(rest)
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A configuration id (Proxmox VE's `pve-configid`: metric servers, custom CPU models).
pub fn config_id(id: &str) -> Result<(), String> {
    let ok = id.len() <= 64
        && chars_ok(
            id,
            |c| c.is_ascii_alphabetic(),
            |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        );
    if ok {
        Ok(())
    } else {
        Err(format!("invalid configuration ID '{id}'"))
    }
}

/// A realm: `pam`, `pve`, `ldap1` (`[A-Za-z][A-Za-z0-9.\-_]+`).
pub fn realm(value: &str) -> Result<(), String> {
    if value.len() >= 2
        && value.len() <= 32
        && chars_ok(value, |c| c.is_ascii_alphabetic(), id_char)
    {
        Ok(())
    } else {
        Err(format!("value '{value}' does not look like a valid realm"))
    }
}

/// A user id `name@realm`: the name has no white space, `:`, `/`, `,` or `!`; at most 64
/// characters in all.
pub fn userid(value: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "value '{value}' does not look like a valid user name"
        ))
    };
    if value.len() > 64 {
        return Err("value may only be 64 characters long".into());
    }
    let Some((name, realm_part)) = value.rsplit_once('@') else {
        return bad();
    };
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/' | ',' | '!'))
        || realm(realm_part).is_err()
    {
        return bad();
    }
    Ok(())
}

/// The name part of an API token (`[A-Za-z][A-Za-z0-9.\-_]+`).
pub fn token_name(value: &str) -> Result<(), String> {
    if value.len() >= 2
        && value.len() <= 64
        && chars_ok(value, |c| c.is_ascii_alphabetic(), id_char)
    {
        Ok(())
    } else {
        Err(format!("value '{value}' does not match the regex pattern"))
    }
}

/// `user@realm!token`.
pub fn token_id(value: &str) -> Result<(), String> {
    match value.split_once('!') {
        Some((user, name)) => userid(user).and_then(|()| token_name(name)),
        None => Err(format!("value '{value}' is not user@realm!token")),
    }
}

/// Group ids (`pve-groupid`), role ids (`pve-roleid`) and pool ids (`pve-poolid`, one level).
pub fn group_id(value: &str) -> Result<(), String> {
    if !value.is_empty() && value.len() <= 64 && value.chars().all(id_char) {
        Ok(())
    } else {
        Err(format!(
            "value '{value}' may only use letters, digits, '-', '_' and '.'"
        ))
    }
}

pub fn role_id(value: &str) -> Result<(), String> {
    group_id(value)
}

pub fn pool_id(value: &str) -> Result<(), String> {
    group_id(value)
}

/// `@group`, `user@realm` or `user@realm!token`: the subjects of an ACL entry.
pub fn acl_subject(value: &str) -> Result<(), String> {
    match value.strip_prefix('@') {
        Some(group) => group_id(group),
        None if value.contains('!') => token_id(value),
        None => userid(value),
    }
}

/// A storage id (`pve-storage-id`): a letter, then letters, digits, `-`, `_`, `.`.
pub fn storage_id(value: &str) -> Result<(), String> {
    if value.len() >= 2
        && value.len() <= 64
        && chars_ok(value, |c| c.is_ascii_alphabetic(), id_char)
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(format!("storage ID '{value}' contains illegal characters"))
    }
}

/// A node name (`pve-node`): letters, digits and inner `-`, at most 63 characters.
pub fn node_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("value '{value}' is not a valid node name"))
    }
}

/// Splits a Proxmox VE list (`,` `;` white space or NUL between items).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c == ';' || c == '\0' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// A guest id list (Proxmox VE's `pve-vmid-list`: `100,101 102;103`), in the given order.
/// The error names the item that is not a vmid (100 to 999999999).
pub fn vmid_list(value: &str) -> Result<Vec<u32>, String> {
    split_list(value)
        .map(|item| {
            item.parse::<u32>()
                .ok()
                .filter(|v| (100..=999_999_999).contains(v))
                .ok_or_else(|| format!("'{item}' is not a vmid"))
        })
        .collect()
}

/// A list of storage content types (`images,iso`).
pub fn content_list(value: &str) -> Result<(), String> {
    check_single_line(value)?;
    split_list(value).try_for_each(|c| {
        if crate::storage::CONTENT_TYPES.contains(&c) {
            Ok(())
        } else {
            Err(format!("unknown content type '{c}'"))
        }
    })
}

/// A list of node names.
pub fn node_list(value: &str) -> Result<(), String> {
    check_single_line(value)?;
    split_list(value).try_for_each(node_name)
}

/// One guest tag (`pve-tag`): `[a-z0-9_][a-z0-9_\-+.]*`, case-insensitive.
pub fn tag(value: &str) -> Result<(), String> {
    let ok = chars_ok(
        value,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'),
    );
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag '{value}'"))
    }
}

/// A tag list as guests store it (`a;b;c`; `,` and spaces are accepted on input).
pub fn tag_list(value: &str) -> Result<(), String> {
    check_single_line(value)?;
    split_list(value).try_for_each(tag)
}

/// An e-mail address as Proxmox VE's `email-opt` accepts it.
pub fn email(value: &str) -> Result<(), String> {
    let bad = || Err(format!("value '{value}' is not a valid e-mail address"));
    let Some((local, domain)) = value.rsplit_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '+' | '-' | '~'))
        });
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok && value.len() <= 254 {
        Ok(())
    } else {
        bad()
    }
}

/// An absolute file system path without `..` components or control characters.
/// A DNS name (`dns-name`): dot-separated labels of letters, digits and inner `-`, at
/// most 63 characters in all, as Proxmox VE takes a guest's name.
pub fn dns_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("'{value}' is not a valid DNS name"))
    }
}

pub fn absolute_path(value: &str) -> Result<(), String> {
    check_single_line(value)?;
    if !value.starts_with('/') {
        return Err(format!("'{value}' is not an absolute path"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(format!("'{value}' must not contain '..'"));
    }
    if value.len() > 4096 {
        return Err("path is too long".into());
    }
    Ok(())
}

/// Free text that stays on one line (names of people, short options).
pub fn single_line(value: &str) -> Result<(), String> {
    check_single_line(value)
}

/// Text for a field of a colon-separated file (`user.cfg`): one line, no `:`.
pub fn colon_field(value: &str) -> Result<(), String> {
    check_single_line(value)?;
    if value.contains(':') {
        return Err("value must not contain ':'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(userid("alice@pve").is_ok());
        assert!(userid("root@pam").is_ok());
        for bad in [
            "alice", "a:b@pve", "a b@pve", "a@p", "a@pve\n", "@pve", "a!t@pve",
        ] {
            assert!(userid(bad).is_err(), "{bad}");
        }
        assert!(token_id("alice@pve!ci").is_ok());
        assert!(token_id("alice@pve!1x").is_err());
        assert!(storage_id("local").is_ok());
        assert!(storage_id("local\n\tshared").is_err());
        assert!(storage_id("-x").is_err());
        assert!(node_list("n1,n2 n3").is_ok());
        assert!(node_list("n1\n\tshared 1").is_err());
        assert!(acl_subject("@ops").is_ok());
        assert!(acl_subject("bob@pve!tok").is_ok());
        assert!(acl_subject("bob").is_err());
    }

    #[test]
    fn tags_and_texts() {
        assert!(tag_list("web;prod,db").is_ok());
        assert!(tag_list("x\nonboot: 1").is_err());
        assert!(tag_list("a:b").is_err());
        assert!(email("a.b+c@example.com").is_ok());
        assert!(email("a@b@c").is_err());
        assert!(absolute_path("/srv/ferrox").is_ok());
        assert!(absolute_path("srv").is_err());
        assert!(absolute_path("/srv/../etc").is_err());
        assert!(colon_field("Alice").is_ok());
        assert!(colon_field("a:b").is_err());
    }
}
