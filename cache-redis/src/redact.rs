//! Keeping passwords out of `Debug`, `describe()`, logs and error strings.
//!
//! Two tools: [`redact`] rewrites a connection URL for display, and [`Secrets`] remembers the
//! passwords of the configured URLs so that any message (an error from the driver, say) can be
//! scrubbed of them before it leaves this crate.

use std::borrow::Cow;

/// What replaces a password.
const MASK: &str = "***";

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &["password", "pass", "pwd", "secret", "token"];

/// A connection URL with its password replaced by `***`, for logs and `Debug`.
///
/// Both the userinfo form (`redis://user:pass@host`) and query forms (`?password=...`) are
/// handled; the rest of the URL (user name, host, port, database) is kept so the output still
/// says where the connection goes. A URL that does not parse is redacted conservatively (an
/// ambiguous userinfo is hidden entirely rather than guessed at).
///
/// # Examples
///
/// ```
/// use cache_redis::redact;
///
/// assert_eq!(redact("redis://app:s3cret@10.0.0.5:6379/2"), "redis://app:***@10.0.0.5:6379/2");
/// assert_eq!(redact("rediss://:s3cret@cache.internal"), "rediss://:***@cache.internal");
/// assert_eq!(redact("redis://10.0.0.5/?password=s3cret&db=1"), "redis://10.0.0.5/?password=***&db=1");
/// assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
pub fn redact(url: &str) -> String {
    let parts = Parts::of(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(parts.scheme);
    if let Some(userinfo) = parts.userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            // `redis://name@host`: redis-rs reads `name` as a user name, but some tools read it
            // as a password, so it is hidden too.
            None if !userinfo.is_empty() => out.push_str(MASK),
            None => {}
        }
        out.push('@');
    }
    out.push_str(parts.host_and_path);
    if let Some(query) = parts.query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(MASK);
                }
                _ => out.push_str(pair),
            }
        }
    }
    if let Some(fragment) = parts.fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Whether byte `at` of a query string lies in the value of a secret parameter.
fn in_secret_value(query: &str, at: usize) -> bool {
    let mut start = 0;
    for pair in query.split('&') {
        if at < start + pair.len() {
            return pair
                .split_once('=')
                .is_some_and(|(name, _)| is_secret_param(name) && at > start + name.len());
        }
        start += pair.len() + 1;
    }
    false
}

/// A URL cut into the pieces redaction cares about.
struct Parts<'a> {
    /// `redis://`, or empty.
    scheme: &'a str,
    /// Between the scheme and the last `@` of the authority.
    userinfo: Option<&'a str>,
    host_and_path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = match url.find("://") {
            Some(i) => url.split_at(i + 3),
            None => ("", url),
        };
        // The userinfo ends at the last `@` before the host. Passwords should be
        // percent-encoded, but people paste raw ones containing `/`, `@` or `?`, so the last
        // `@` wins over the first `/` and the first `?` (`app:s3c?ret@host` is the password
        // `s3c?ret`; cutting the query off first would show it). The one exception: an `@`
        // in the value of a secret query parameter (`?password=a@b`) is the query's, and the
        // userinfo, if any, ends before that query. Either way a password is hidden.
        let userinfo_end = match rest.rfind('@') {
            Some(at) => match rest.find('?') {
                Some(q) if q < at && in_secret_value(&rest[q + 1..], at - q - 1) => {
                    rest[..q].rfind('@')
                }
                _ => Some(at),
            },
            None => None,
        };
        let (userinfo, rest) = match userinfo_end {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        let (host_and_path, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        Parts {
            scheme,
            userinfo,
            host_and_path,
            query,
            fragment,
        }
    }

    /// The secrets this URL carries, as written and percent-decoded.
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(userinfo) = self.userinfo {
            let secret = match userinfo.split_once(':') {
                Some((_, password)) => password,
                None => userinfo,
            };
            out.push(secret.to_owned());
        }
        if let Some(query) = self.query {
            for pair in query.split('&') {
                if let Some((name, value)) = pair.split_once('=')
                    && is_secret_param(name)
                {
                    out.push(value.to_owned());
                }
            }
        }
        let decoded: Vec<String> = out
            .iter()
            .filter_map(|s| match percent_decode(s) {
                Cow::Owned(d) => Some(d),
                Cow::Borrowed(_) => None,
            })
            .collect();
        out.extend(decoded);
        out.retain(|s| !s.is_empty());
        out
    }
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The passwords of a configuration's URLs, to scrub from any text before it is shown.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn of<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: Vec<String> = urls
            .into_iter()
            .flat_map(|u| Parts::of(u).secrets())
            .collect();
        // Longest first, so a password that contains another one is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets(all)
    }

    /// `text` with every known secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_forms() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:p@h"), "redis://:***@h");
        assert_eq!(redact("redis://justone@h"), "redis://***@h");
        assert_eq!(redact("redis://@h"), "redis://@h");
        assert_eq!(
            redact("rediss://u:p@h:6380/#insecure"),
            "rediss://u:***@h:6380/#insecure"
        );
        // Raw (unencoded) `@` and `/` inside a password: the last `@` ends the userinfo.
        assert_eq!(redact("redis://u:p@ss/w@h:1"), "redis://u:***@h:1");
        // Encoded.
        assert_eq!(redact("redis://u:p%40ss@h"), "redis://u:***@h");
        // A raw `?` in a password: not the start of a query.
        assert_eq!(
            redact("redis://app:s3c?ret@10.0.0.5:6379"),
            "redis://app:***@10.0.0.5:6379"
        );
        assert_eq!(redact("redis://u:a?b=c@h/0?db=1"), "redis://u:***@h/0?db=1");
        assert_eq!(redact("redis://s3c?ret@h"), "redis://***@h");
    }

    #[test]
    fn query_forms() {
        assert_eq!(
            redact("redis://h/?password=p&db=2"),
            "redis://h/?password=***&db=2"
        );
        assert_eq!(
            redact("redis://h?db=2&PASSWORD=p@x"),
            "redis://h?db=2&PASSWORD=***"
        );
        assert_eq!(
            redact("redis://u:p@h?password=q"),
            "redis://u:***@h?password=***"
        );
        assert_eq!(
            redact("redis://h?protocol=resp3"),
            "redis://h?protocol=resp3"
        );
    }

    #[test]
    fn no_secret_survives() {
        for url in [
            "redis://u:hunter2@h",
            "redis://:hunter2@h:1/3",
            "redis://hunter2@h",
            "redis://h/?password=hunter2",
            "redis://h/?pass=hunter2&x=1",
            "unix:///tmp/redis.sock?pass=hunter2",
            "hunter2@h",
            "redis://u:hun?ter2@h",
            "redis://u:hunter2?@h",
            "redis://u:?hunter2@h:1/?db=2",
            "redis://u:p@h?password=hunter2@x",
        ] {
            let r = redact(url);
            assert!(!r.contains("hunter2"), "{url} -> {r}");
        }
        assert_eq!(redact("redis://u:hun/ter2@h"), "redis://u:***@h");
    }

    #[test]
    fn scrub_replaces_raw_and_decoded_passwords() {
        let s = Secrets::of(["redis://u:p%40ssw0rd@h", "redis://h?password=other"]);
        assert_eq!(
            s.scrub("auth failed for p@ssw0rd, p%40ssw0rd and other"),
            "auth failed for ***, *** and ***"
        );
        assert_eq!(Secrets::of(["redis://h"]).scrub("plain"), "plain");
        assert!(!format!("{s:?}").contains("ssw0rd"));
        let s = Secrets::of(["redis://app:s3c?ret@h"]);
        assert_eq!(s.scrub("WRONGPASS for s3c?ret"), "WRONGPASS for ***");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
