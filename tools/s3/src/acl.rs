//! Access control lists: S3's grants on buckets and objects, canned ACLs, grant headers, and the
//! check of one caller against them.
//!
//! Invariants:
//! - An owner always holds every right on what it owns (S3: the owner's FULL_CONTROL, and
//!   READ_ACP/WRITE_ACP even after a PutAcl drops its grant).
//! - FULL_CONTROL implies every other permission; WRITE on an object means nothing (S3 ignores it).
//! - `AllUsers` matches everyone, anonymous callers too; `AuthenticatedUsers` any signed caller;
//!   a user grant matches the caller of that canonical id. Grants by email are stored by the
//!   canonical id the email names when the ACL is set (an unknown email is
//!   `UnresolvableGrantByEmailAddress`).
//! - With `ignore_public` (public access block's IgnorePublicAcls) the two public groups match
//!   no one.

use serde::{Deserialize, Serialize};

use s3s::dto;
use s3s::{s3_error, S3Result};

use crate::users::Users;

/// The group URI of everyone.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group URI of every signed caller.
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// The group URI of S3's log delivery (kept and shown; matches no caller here).
pub const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";
/// S3's most grants in one ACL.
pub const GRANTS_MAX: usize = 100;

/// Whether the caller may read an object of the given user metadata (its owner and ACL).
pub type MayRead<'a> = dyn Fn(&[(String, String)]) -> bool + Send + Sync + 'a;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    /// List a bucket; read an object.
    Read,
    /// Write and delete objects of a bucket.
    Write,
    /// Read the ACL.
    ReadAcp,
    /// Write the ACL.
    WriteAcp,
    /// All of the above.
    FullControl,
}

impl Permission {
    fn s3(self) -> &'static str {
        match self {
            Permission::Read => dto::Permission::READ,
            Permission::Write => dto::Permission::WRITE,
            Permission::ReadAcp => dto::Permission::READ_ACP,
            Permission::WriteAcp => dto::Permission::WRITE_ACP,
            Permission::FullControl => dto::Permission::FULL_CONTROL,
        }
    }

    fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            dto::Permission::READ => Permission::Read,
            dto::Permission::WRITE => Permission::Write,
            dto::Permission::READ_ACP => Permission::ReadAcp,
            dto::Permission::WRITE_ACP => Permission::WriteAcp,
            dto::Permission::FULL_CONTROL => Permission::FullControl,
            _ => return None,
        })
    }

    fn grants(self, wanted: Permission) -> bool {
        self == Permission::FullControl || self == wanted
    }
}

/// Whom a grant names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A user, by canonical id.
    User(String),
    /// A group, by URI.
    Group(String),
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Whom.
    pub grantee: Grantee,
    /// What.
    pub permission: Permission,
}

/// The grants of a bucket or object (its owner is kept beside it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The grants besides the owner's implicit ones.
    pub grants: Vec<Grant>,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The signed caller's canonical id; `None` for an anonymous request.
    pub id: Option<&'a str>,
}

impl Acl {
    /// The grants of canned ACL `name` for `owner` (whose FULL_CONTROL is implicit), with
    /// `bucket_owner` for the `bucket-owner-*` ACLs of objects.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown name.
    pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> S3Result<Acl> {
        let group = |uri: &str, permission| Grant { grantee: Grantee::Group(uri.to_owned()), permission };
        let user = |id: &str, permission| Grant { grantee: Grantee::User(id.to_owned()), permission };
        let grants = match name {
            "private" => vec![],
            "public-read" => vec![group(ALL_USERS, Permission::Read)],
            "public-read-write" => vec![group(ALL_USERS, Permission::Read), group(ALL_USERS, Permission::Write)],
            "authenticated-read" => vec![group(AUTHENTICATED_USERS, Permission::Read)],
            "aws-exec-read" => vec![],
            "log-delivery-write" => {
                vec![group(LOG_DELIVERY, Permission::Write), group(LOG_DELIVERY, Permission::ReadAcp)]
            }
            "bucket-owner-read" if bucket_owner != owner => vec![user(bucket_owner, Permission::Read)],
            "bucket-owner-full-control" if bucket_owner != owner => vec![user(bucket_owner, Permission::FullControl)],
            "bucket-owner-read" | "bucket-owner-full-control" => vec![],
            other => return Err(s3_error!(InvalidArgument, "unknown canned ACL `{other}`")),
        };
        Ok(Acl { grants })
    }

    /// The ACL of the `x-amz-grant-*` headers, `None` when there is none.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed grant; `UnresolvableGrantByEmailAddress`.
    pub fn from_headers(headers: &[(Permission, Option<&str>)], users: &Users) -> S3Result<Option<Acl>> {
        let mut grants = Vec::new();
        let mut any = false;
        for (permission, value) in headers {
            let Some(value) = value else { continue };
            any = true;
            for item in value.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let (kind, v) = item.split_once('=').ok_or_else(|| {
                    s3_error!(InvalidArgument, "a grant must be id=\"...\", emailAddress=\"...\" or uri=\"...\"")
                })?;
                let v = v.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => Grantee::User(v.to_owned()),
                    "emailaddress" => Grantee::User(resolve_email(v, users)?),
                    "uri" => Grantee::Group(group_uri(v)?),
                    other => return Err(s3_error!(InvalidArgument, "unknown grantee type `{other}`")),
                };
                grants.push(Grant { grantee, permission: *permission });
            }
        }
        check_len(&grants)?;
        Ok(any.then_some(Acl { grants }))
    }

    /// The ACL of an `AccessControlPolicy` document, checked against `owner`.
    ///
    /// # Errors
    /// `MalformedACLError` for a grant without grantee or permission, `AccessDenied` when the
    /// document names another owner, `UnresolvableGrantByEmailAddress`, `InvalidArgument`.
    pub fn from_policy(p: &dto::AccessControlPolicy, owner: &str, users: &Users) -> S3Result<Acl> {
        if let Some(id) = p.owner.as_ref().and_then(|o| o.id.as_deref()) {
            if id != owner {
                return Err(s3_error!(AccessDenied, "The owner of an ACL cannot be changed"));
            }
        }
        let mut grants = Vec::new();
        for g in p.grants.iter().flatten() {
            let malformed = || {
                s3_error!(
                    MalformedACLError,
                    "The XML you provided was not well-formed or did not validate against our published schema"
                )
            };
            let grantee = g.grantee.as_ref().ok_or_else(malformed)?;
            let permission = g.permission.as_ref().and_then(|p| Permission::parse(p.as_str())).ok_or_else(malformed)?;
            let grantee = match grantee.type_.as_str() {
                dto::Type::CANONICAL_USER => Grantee::User(grantee.id.clone().ok_or_else(malformed)?),
                dto::Type::AMAZON_CUSTOMER_BY_EMAIL => {
                    Grantee::User(resolve_email(grantee.email_address.as_deref().ok_or_else(malformed)?, users)?)
                }
                dto::Type::GROUP => Grantee::Group(group_uri(grantee.uri.as_deref().ok_or_else(malformed)?)?),
                _ => return Err(malformed()),
            };
            grants.push(Grant { grantee, permission });
        }
        check_len(&grants)?;
        Ok(Acl { grants })
    }

    /// S3's document of this ACL: the owner's FULL_CONTROL first, then the grants.
    pub fn to_s3(&self, owner: &dto::Owner, users: &Users) -> Vec<dto::Grant> {
        let owner_id = owner.id.clone().unwrap_or_default();
        let mut out = vec![user_grant(&owner_id, owner.display_name.clone(), Permission::FullControl)];
        for g in &self.grants {
            out.push(match &g.grantee {
                Grantee::User(id) => {
                    let name = users.by_canonical_id(id).map(|u| u.display_name().to_owned());
                    user_grant(id, name, g.permission)
                }
                Grantee::Group(uri) => dto::Grant {
                    grantee: Some(dto::Grantee {
                        type_: dto::Type::from_static(dto::Type::GROUP),
                        uri: Some(uri.clone()),
                        display_name: None,
                        email_address: None,
                        id: None,
                    }),
                    permission: Some(dto::Permission::from(g.permission.s3().to_owned())),
                },
            });
        }
        out
    }

    /// Whether `caller` holds `wanted` on what `owner` owns under this ACL.
    pub fn allows(&self, owner: &str, caller: Caller<'_>, wanted: Permission, ignore_public: bool) -> bool {
        if caller.id == Some(owner) {
            return true;
        }
        self.grants.iter().any(|g| {
            g.permission.grants(wanted)
                && match &g.grantee {
                    Grantee::User(id) => caller.id == Some(id.as_str()),
                    Grantee::Group(_) if ignore_public => false,
                    Grantee::Group(uri) if uri == ALL_USERS => true,
                    Grantee::Group(uri) if uri == AUTHENTICATED_USERS => caller.id.is_some(),
                    Grantee::Group(_) => false,
                }
        })
    }

    /// True when a grant names everyone or every signed user (S3's "public" ACL).
    pub fn is_public(&self) -> bool {
        self.grants
            .iter()
            .any(|g| matches!(&g.grantee, Grantee::Group(u) if u == ALL_USERS || u == AUTHENTICATED_USERS))
    }

    /// True for an ACL that grants nothing beyond the owner's (and, for objects, the bucket
    /// owner's full control): what a bucket whose ACLs are disabled accepts.
    pub fn is_owner_only(&self, bucket_owner: &str) -> bool {
        self.grants
            .iter()
            .all(|g| g.grantee == Grantee::User(bucket_owner.to_owned()) && g.permission == Permission::FullControl)
    }

    /// The compact form kept in an object's user metadata.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ACL of [`Acl::encode`]'s text (a damaged entry reads as private).
    pub fn decode(s: &str) -> Acl {
        serde_json::from_str(s).unwrap_or_default()
    }
}

fn user_grant(id: &str, display_name: Option<String>, permission: Permission) -> dto::Grant {
    dto::Grant {
        grantee: Some(dto::Grantee {
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            id: Some(id.to_owned()),
            display_name,
            email_address: None,
            uri: None,
        }),
        permission: Some(dto::Permission::from(permission.s3().to_owned())),
    }
}

fn resolve_email(email: &str, users: &Users) -> S3Result<String> {
    users.by_email(email).map(|u| u.canonical_id.clone()).ok_or_else(|| {
        s3_error!(
            UnresolvableGrantByEmailAddress,
            "The email address you provided does not match any account on record."
        )
    })
}

fn group_uri(uri: &str) -> S3Result<String> {
    match uri {
        ALL_USERS | AUTHENTICATED_USERS | LOG_DELIVERY => Ok(uri.to_owned()),
        other => Err(s3_error!(InvalidArgument, "Invalid group uri `{other}`")),
    }
}

fn check_len(grants: &[Grant]) -> S3Result<()> {
    if grants.len() > GRANTS_MAX {
        return Err(s3_error!(MalformedACLError, "An ACL holds at most {} grants", GRANTS_MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice-id";
    const BOB: &str = "bob-id";

    fn users() -> Users {
        Users::parse(
            "[[user]]\nname = \"bob\"\naccess_key = \"AK\"\nsecret_key = \"s\"\ncanonical_id = \"bob-id\"\nemail = \"bob@example.com\"\n",
        )
        .expect("users")
    }

    #[test]
    fn owners_may_do_everything_and_strangers_nothing_on_a_private_acl() {
        let acl = Acl::canned("private", ALICE, ALICE).expect("canned");
        for p in [Permission::Read, Permission::Write, Permission::ReadAcp, Permission::WriteAcp] {
            assert!(acl.allows(ALICE, Caller { id: Some(ALICE) }, p, false));
            assert!(!acl.allows(ALICE, Caller { id: Some(BOB) }, p, false));
            assert!(!acl.allows(ALICE, Caller { id: None }, p, false));
        }
    }

    #[test]
    fn public_groups_match_as_s3_says() {
        let read = Acl::canned("public-read", ALICE, ALICE).expect("canned");
        assert!(read.allows(ALICE, Caller { id: None }, Permission::Read, false));
        assert!(!read.allows(ALICE, Caller { id: None }, Permission::Write, false));
        assert!(!read.allows(ALICE, Caller { id: None }, Permission::Read, true), "IgnorePublicAcls");
        assert!(read.is_public());
        let auth = Acl::canned("authenticated-read", ALICE, ALICE).expect("canned");
        assert!(auth.allows(ALICE, Caller { id: Some(BOB) }, Permission::Read, false));
        assert!(!auth.allows(ALICE, Caller { id: None }, Permission::Read, false));
        assert!(Acl::canned("nonsense", ALICE, ALICE).is_err());
    }

    #[test]
    fn grant_headers_name_users_by_id_email_and_groups_by_uri() {
        let acl = Acl::from_headers(
            &[
                (Permission::Read, Some(&format!("emailAddress=\"bob@example.com\", uri=\"{ALL_USERS}\""))),
                (Permission::FullControl, Some("id=\"carol-id\"")),
                (Permission::Write, None),
            ],
            &users(),
        )
        .expect("parse")
        .expect("some");
        assert_eq!(acl.grants.len(), 3);
        assert!(acl.allows(ALICE, Caller { id: Some(BOB) }, Permission::Read, false));
        assert!(acl.allows(ALICE, Caller { id: Some("carol-id") }, Permission::WriteAcp, false));
        let err =
            Acl::from_headers(&[(Permission::Read, Some("emailAddress=\"nobody@x\""))], &users()).expect_err("unknown");
        assert_eq!(err.code().as_str(), "UnresolvableGrantByEmailAddress");
        assert!(Acl::from_headers(&[], &users()).expect("none").is_none());
    }

    #[test]
    fn the_compact_form_reads_back() {
        let acl = Acl::canned("public-read-write", ALICE, ALICE).expect("canned");
        assert_eq!(Acl::decode(&acl.encode()), acl);
        assert_eq!(Acl::decode("garbage"), Acl::default());
    }
}
