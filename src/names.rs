//! Name rules of PROTOCOL.md: usernames and room names.

/// Longest username.
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest room name.
pub const MAX_ROOM_LEN: usize = 64;

/// `^[A-Za-z0-9_.-]{1,32}$`
pub fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `^[A-Za-z0-9_.:-]{1,64}$`
pub fn valid_room(name: &str) -> bool {
    (1..=MAX_ROOM_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Explains why a username is refused (for the command line).
pub fn username_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a username cannot be empty".into());
    }
    if name.len() > MAX_USERNAME_LEN {
        return Some(format!(
            "a username has at most {MAX_USERNAME_LEN} characters"
        ));
    }
    if !valid_username(name) {
        return Some(format!(
            "invalid username {name:?}: use letters, digits, '_', '.' and '-' only"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["a", "alice", "Bob_1", "x.y-z", &"a".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
            assert!(username_problem(ok).is_none());
        }
        for bad in [
            "",
            "a b",
            "al:ice",
            "ünï",
            "a/b",
            "a@b",
            &"a".repeat(33),
            "tab\t",
        ] {
            assert!(!valid_username(bad), "{bad}");
            assert!(username_problem(bad).is_some());
        }
    }

    #[test]
    fn rooms() {
        for ok in ["lobby", "feed:metrics", "a.b-c_d:e", &"r".repeat(64)] {
            assert!(valid_room(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", &"r".repeat(65)] {
            assert!(!valid_room(bad), "{bad}");
        }
    }
}
