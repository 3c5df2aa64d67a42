//! Where a provider `base_url` may point: the built-in provider hosts plus the operator's
//! `KEYWARD_PROVIDER_HOSTS`. A key is only ever sent to a host that passes [`HostAllowlist::check`].
//!
//! Messages returned here are reasons without the URL itself: the caller decides whether the
//! host may be named (it may not when the URL came from an environment variable).

use reqwest::Url;

/// Hosts that are always allowed, over https only, on any port.
pub const BUILT_IN_HOSTS: [&str; 2] = ["api.anthropic.com", "api.openai.com"];

#[derive(Clone, Debug, Default)]
pub(crate) struct HostAllowlist {
    extra: Vec<AllowedHost>,
}

/// One `KEYWARD_PROVIDER_HOSTS` entry: `host` (any port) or `host:port` (only that port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

/// Why a base URL is refused. `Display` never contains the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlRefused {
    #[error("is not a valid absolute http(s) URL")]
    Invalid,
    #[error("must not contain a user name or password")]
    Userinfo,
    #[error("must not contain a query or a fragment")]
    QueryOrFragment,
    #[error("uses plain http, which is allowed only for hosts listed in KEYWARD_PROVIDER_HOSTS")]
    PlainHttp,
    #[error(
        "points at a host that is not allowed (allowed: the built-in provider hosts and KEYWARD_PROVIDER_HOSTS)"
    )]
    HostNotAllowed { host: String },
}

impl HostAllowlist {
    /// Builds the list from `KEYWARD_PROVIDER_HOSTS` entries; blank entries are ignored.
    pub(crate) fn new(extra_hosts: &[String]) -> Self {
        let extra = extra_hosts
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .map(AllowedHost::parse)
            .collect();
        Self { extra }
    }

    /// Parses `raw` as a provider base URL and checks it against the list.
    pub(crate) fn check_base_url(&self, raw: &str) -> Result<Url, UrlRefused> {
        let url = Url::parse(raw.trim()).map_err(|_| UrlRefused::Invalid)?;
        self.check(&url)?;
        Ok(url)
    }

    fn check(&self, url: &Url) -> Result<(), UrlRefused> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(UrlRefused::Invalid),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Userinfo);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlRefused::QueryOrFragment);
        }
        let host = url
            .host_str()
            .map(normalize_host)
            .ok_or(UrlRefused::Invalid)?;
        let port = url.port_or_known_default().ok_or(UrlRefused::Invalid)?;

        let extra = self
            .extra
            .iter()
            .any(|allowed| allowed.host == host && allowed.port.is_none_or(|p| p == port));
        if extra {
            return Ok(());
        }
        if BUILT_IN_HOSTS.contains(&host.as_str()) {
            return if https {
                Ok(())
            } else {
                Err(UrlRefused::PlainHttp)
            };
        }
        Err(UrlRefused::HostNotAllowed { host })
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Self {
        // A pasted URL ("http://host:port/") is read as its host and explicit port.
        let entry = entry
            .split_once("://")
            .map_or(entry, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            // [v6] or [v6]:port
            match rest.split_once(']') {
                Some((host, tail)) => (host, tail.strip_prefix(':')),
                None => (rest, None),
            }
        } else if entry.matches(':').count() == 1 {
            let (host, port) = entry.split_once(':').unwrap_or((entry, ""));
            (host, Some(port))
        } else {
            // A bare name, or a bare IPv6 address that cannot carry a port.
            (entry, None)
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::warn!(
                        entry,
                        "KEYWARD_PROVIDER_HOSTS entry has an unreadable port; it allows no port"
                    );
                    Some(0)
                }
            },
            None => None,
        };
        Self {
            host: normalize_host(host),
            port,
        }
    }
}

/// Lower case, no IPv6 brackets, no trailing root dot: the form both sides are compared in.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> HostAllowlist {
        HostAllowlist::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn built_in_hosts_need_https_but_any_port() {
        let l = list(&[]);
        assert!(l.check_base_url("https://api.openai.com/v1").is_ok());
        assert!(l.check_base_url("https://API.Anthropic.com:8443").is_ok());
        assert_eq!(
            l.check_base_url("http://api.openai.com/v1"),
            Err(UrlRefused::PlainHttp)
        );
    }

    #[test]
    fn a_host_entry_allows_any_port_and_a_host_port_entry_only_that_port() {
        let l = list(&["Local.Test", "127.0.0.1:8080", "[::1]:9000"]);
        assert!(l.check_base_url("http://local.test:1234/v1").is_ok());
        assert!(l.check_base_url("https://LOCAL.TEST./v1").is_ok());
        assert!(l.check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(matches!(
            l.check_base_url("http://127.0.0.1:8081"),
            Err(UrlRefused::HostNotAllowed { .. })
        ));
        assert!(l.check_base_url("http://[::1]:9000/v1").is_ok());
        assert!(l.check_base_url("http://[::1]:9001/v1").is_err());
    }

    #[test]
    fn a_host_port_entry_compares_with_the_schemes_default_port() {
        let l = list(&["example.test:443"]);
        assert!(l.check_base_url("https://example.test/v1").is_ok());
        assert!(l.check_base_url("http://example.test/v1").is_err());
    }

    #[test]
    fn userinfo_queries_and_other_schemes_are_refused() {
        let l = list(&["example.test"]);
        assert_eq!(
            l.check_base_url("https://user:pw@example.test"),
            Err(UrlRefused::Userinfo)
        );
        assert_eq!(
            l.check_base_url("https://example.test/v1?key=x"),
            Err(UrlRefused::QueryOrFragment)
        );
        assert_eq!(
            l.check_base_url("ftp://example.test"),
            Err(UrlRefused::Invalid)
        );
        assert_eq!(l.check_base_url("example.test"), Err(UrlRefused::Invalid));
    }

    #[test]
    fn lookalike_hosts_are_not_allowed() {
        let l = list(&[]);
        for url in [
            "https://api.openai.com.evil.test",
            "https://evil.test/api.openai.com",
            "https://api.openai.com@evil.test",
        ] {
            assert!(l.check_base_url(url).is_err(), "{url}");
        }
    }
}
