//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` as S3 evaluates them (RFC 9110's order), for GET and HEAD, for
//! writes (a conditional PUT or copy), and for the binding's `onlyIf`.
//!
//! HTTP dates have whole seconds, so an object's upload time is compared at second precision.

/// The conditions a request carries. ETag lists are as sent (quoted or not, comma-separated,
/// `*` for any); times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<u64>,
    pub if_unmodified_since: Option<u64>,
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// 304, for GET and HEAD.
    NotModified,
    /// 412 `PreconditionFailed`.
    PreconditionFailed,
}

/// The object a condition is checked against: its ETag (without quotes) and upload time in
/// Unix milliseconds; `None` when there is no such object.
pub type Current<'a> = Option<(&'a str, u64)>;

fn matches(list: &str, etag: Option<&str>) -> bool {
    let Some(etag) = etag else { return false };
    list.split(',').map(str::trim).any(|candidate| {
        let candidate = candidate.strip_prefix("W/").unwrap_or(candidate);
        candidate == "*" || candidate.trim_matches('"') == etag
    })
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    /// For GET and HEAD of an object that exists.
    pub fn for_read(&self, etag: &str, uploaded_ms: u64) -> Verdict {
        let etag = Some(etag);
        let modified = uploaded_ms / 1000;
        match &self.if_match {
            Some(list) if !matches(list, etag) => return Verdict::PreconditionFailed,
            Some(_) => {}
            None => {
                if self.if_unmodified_since.is_some_and(|since| modified > since) {
                    return Verdict::PreconditionFailed;
                }
            }
        }
        match &self.if_none_match {
            Some(list) if matches(list, etag) => return Verdict::NotModified,
            Some(_) => {}
            None => {
                if self.if_modified_since.is_some_and(|since| modified <= since) {
                    return Verdict::NotModified;
                }
            }
        }
        Verdict::Proceed
    }

    /// For a write (conditional PUT, copy destination, `onlyIf` on put): every failing
    /// condition is 412, and `If-None-Match: *` means "only if there is no object yet".
    pub fn for_write(&self, current: Current<'_>) -> Verdict {
        let etag = current.map(|(etag, _)| etag);
        if let Some(list) = &self.if_match {
            if !matches(list, etag) {
                return Verdict::PreconditionFailed;
            }
        }
        if let Some(list) = &self.if_none_match {
            if matches(list, etag) {
                return Verdict::PreconditionFailed;
            }
        }
        if let Some((_, uploaded_ms)) = current {
            let modified = uploaded_ms / 1000;
            if self.if_match.is_none() && self.if_unmodified_since.is_some_and(|since| modified > since) {
                return Verdict::PreconditionFailed;
            }
            if self.if_none_match.is_none() && self.if_modified_since.is_some_and(|since| modified <= since) {
                return Verdict::PreconditionFailed;
            }
        }
        Verdict::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "5d41402abc4b2a76b9719d911017c592";
    const UPLOADED_MS: u64 = 1_700_000_000_500; // second 1_700_000_000

    fn cond(f: impl FnOnce(&mut Conditions)) -> Conditions {
        let mut c = Conditions::default();
        f(&mut c);
        c
    }

    #[test]
    fn reads_follow_s3s_order_of_conditions() {
        use Verdict::*;
        let read = |c: Conditions| c.for_read(ETAG, UPLOADED_MS);
        assert_eq!(read(Conditions::default()), Proceed);
        assert_eq!(read(cond(|c| c.if_match = Some(format!("\"{ETAG}\"")))), Proceed);
        assert_eq!(read(cond(|c| c.if_match = Some(format!("\"other\", W/\"{ETAG}\"")))), Proceed);
        assert_eq!(read(cond(|c| c.if_match = Some("*".into()))), Proceed);
        assert_eq!(read(cond(|c| c.if_match = Some("\"other\"".into()))), PreconditionFailed);
        assert_eq!(read(cond(|c| c.if_none_match = Some(ETAG.into()))), NotModified);
        assert_eq!(read(cond(|c| c.if_none_match = Some("\"other\"".into()))), Proceed);
        // Second precision: modified at second 1_700_000_000.
        assert_eq!(read(cond(|c| c.if_modified_since = Some(1_700_000_000))), NotModified);
        assert_eq!(read(cond(|c| c.if_modified_since = Some(1_699_999_999))), Proceed);
        assert_eq!(read(cond(|c| c.if_unmodified_since = Some(1_700_000_000))), Proceed);
        assert_eq!(read(cond(|c| c.if_unmodified_since = Some(1_699_999_999))), PreconditionFailed);
        // If-Match true wins over If-Unmodified-Since false (S3's documented case) ...
        assert_eq!(
            read(cond(|c| {
                c.if_match = Some(ETAG.into());
                c.if_unmodified_since = Some(1);
            })),
            Proceed
        );
        // ... and If-None-Match false (the ETag differs) wins over If-Modified-Since true.
        assert_eq!(
            read(cond(|c| {
                c.if_none_match = Some("\"other\"".into());
                c.if_modified_since = Some(1_800_000_000);
            })),
            Proceed
        );
    }

    #[test]
    fn writes_fail_every_unmet_condition_with_412() {
        use Verdict::*;
        let existing = Some((ETAG, UPLOADED_MS));
        let create_only = cond(|c| c.if_none_match = Some("*".into()));
        assert_eq!(create_only.for_write(None), Proceed);
        assert_eq!(create_only.for_write(existing), PreconditionFailed);
        let replace_this = cond(|c| c.if_match = Some(ETAG.into()));
        assert_eq!(replace_this.for_write(existing), Proceed);
        assert_eq!(replace_this.for_write(Some(("other", UPLOADED_MS))), PreconditionFailed);
        assert_eq!(replace_this.for_write(None), PreconditionFailed, "If-Match with no object fails");
        assert_eq!(cond(|c| c.if_modified_since = Some(1_800_000_000)).for_write(existing), PreconditionFailed);
        assert_eq!(cond(|c| c.if_unmodified_since = Some(1)).for_write(existing), PreconditionFailed);
        assert_eq!(Conditions::default().for_write(existing), Proceed);
        assert!(Conditions::default().is_empty());
    }
}
