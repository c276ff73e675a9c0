//! Repository names, tags and references as the distribution spec's grammar allows them.

use image::Digest;

use crate::errors::{ApiError, Code};

/// Longest repository name accepted (the spec lets registries cap it; 255 is what docker's registry uses).
pub const NAME_MAX: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most NAME_MAX bytes: the same
/// grammar the client's reference parser applies.
pub fn valid_name(name: &str) -> bool {
    name.len() <= NAME_MAX && image::reference::check_repository(name).is_ok()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    image::reference::check_tag(tag).is_ok()
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(Code::NameInvalid, "invalid repository name")
            .detail(serde_json::json!({ "name": name })))
    }
}

pub fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|_| {
        ApiError::new(Code::DigestInvalid, "invalid digest")
            .detail(serde_json::json!({ "digest": s }))
    })
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

pub fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    if s.contains(':') {
        parse_digest(s).map(Reference::Digest)
    } else if valid_tag(s) {
        Ok(Reference::Tag(s.to_string()))
    } else {
        Err(ApiError::new(Code::ManifestInvalid, "invalid tag")
            .detail(serde_json::json!({ "tag": s })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "x/y",
            "a.b_c__d---e/f0",
            "0",
            "my-app/sub.dir/x_y",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "A",
            "a/../b",
            "a/./b",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a_.b",
            "a b",
            "a%2fb",
            long.as_str(),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_x.Y-1"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
        assert!(!valid_tag(""));
    }
}
