//! Virtual-hosted-style requests: `BUCKET.DOMAIN` in the `Host` header names the bucket, for each
//! configured domain; any other host (an IP address, `localhost`, a domain not configured) is
//! path-style, `/BUCKET/KEY`.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

/// The configured domains.
#[derive(Debug, Clone, Default)]
pub struct Domains(pub Vec<String>);

impl Domains {
    /// The domains of a comma-separated setting.
    pub fn parse(setting: &str) -> Domains {
        Domains(setting.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect())
    }

    /// The bucket a `Host` header names, if it is virtual-hosted style.
    pub fn bucket_of_host<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name =
            host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        self.0.iter().find_map(|d| {
            let bucket = name.strip_suffix(d.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then_some(bucket)
        })
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of_host(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_configured_domains_only() {
        let d = Domains::parse("s3.example.com, s3.test");
        assert_eq!(d.bucket_of_host("photos.s3.example.com"), Some("photos"));
        assert_eq!(d.bucket_of_host("my.dotted.bucket.s3.test:7480"), Some("my.dotted.bucket"));
        assert_eq!(d.bucket_of_host("s3.test:7480"), None);
        assert_eq!(d.bucket_of_host("127.0.0.1:7480"), None);
        assert_eq!(d.bucket_of_host("evils3.test"), None);
        assert_eq!(Domains::parse("").bucket_of_host("a.s3.test"), None);
    }
}
