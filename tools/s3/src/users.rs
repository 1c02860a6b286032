//! The gateway's users: a TOML file of S3 identities, read at start and again on SIGHUP.
//!
//! Invariants:
//! - Access keys and canonical ids are unique within the file; a file that breaks that is
//!   refused whole, and a refused reload keeps the users already loaded (the gateway never ends
//!   up with no users because of a typo).
//! - Lookups read an immutable snapshot (`Arc<Users>`), swapped whole on reload: a request sees
//!   one version of the file from start to end.
//! - Secret keys are never logged or formatted (`Debug` omits them).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use serde::Deserialize;

/// One S3 identity.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's name (logs, `Owner` when no display name is given).
    pub name: String,
    /// The SigV4/SigV2 access key id.
    pub access_key: String,
    /// The secret key (never logged).
    pub secret_key: String,
    /// S3's canonical user id: owners and grantees name users by it.
    pub canonical_id: String,
    /// The `DisplayName` S3 shows for owners and grantees.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The address a grant by email names.
    #[serde(default)]
    pub email: Option<String>,
    /// An optional tenant the user belongs to (informational for now).
    #[serde(default)]
    #[expect(dead_code, reason = "read by the access checks of a later step")]
    pub tenant: Option<String>,
}

impl User {
    /// The name S3 shows for this user.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("access_key", &self.access_key)
            .field("canonical_id", &self.canonical_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

/// One loaded version of the users file.
#[derive(Debug, Default)]
pub struct Users {
    by_access_key: HashMap<String, Arc<User>>,
    by_canonical_id: HashMap<String, Arc<User>>,
    by_email: HashMap<String, Arc<User>>,
}

impl Users {
    /// Parses a users file's text.
    ///
    /// # Errors
    /// TOML errors, an empty field, or a duplicated access key, canonical id or email.
    pub fn parse(text: &str) -> anyhow::Result<Users> {
        let file: UsersFile = toml::from_str(text).context("parse the users file")?;
        let mut users = Users::default();
        for user in file.users {
            for (field, value) in [
                ("name", &user.name),
                ("access_key", &user.access_key),
                ("secret_key", &user.secret_key),
                ("canonical_id", &user.canonical_id),
            ] {
                if value.trim().is_empty() {
                    bail!("user `{}`: `{field}` is empty", user.name);
                }
            }
            let user = Arc::new(user);
            if users.by_access_key.insert(user.access_key.clone(), Arc::clone(&user)).is_some() {
                bail!("access key `{}` is given to more than one user", user.access_key);
            }
            if users.by_canonical_id.insert(user.canonical_id.clone(), Arc::clone(&user)).is_some() {
                bail!("canonical id `{}` is given to more than one user", user.canonical_id);
            }
            if let Some(email) = &user.email {
                if users.by_email.insert(email.to_ascii_lowercase(), Arc::clone(&user)).is_some() {
                    bail!("email `{email}` is given to more than one user");
                }
            }
        }
        Ok(users)
    }

    /// The user of an access key.
    pub fn by_access_key(&self, access_key: &str) -> Option<&Arc<User>> {
        self.by_access_key.get(access_key)
    }

    /// The user of a canonical id.
    pub fn by_canonical_id(&self, id: &str) -> Option<&Arc<User>> {
        self.by_canonical_id.get(id)
    }

    /// The user of an email address (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Arc<User>> {
        self.by_email.get(&email.to_ascii_lowercase())
    }

    /// How many users are loaded.
    pub fn len(&self) -> usize {
        self.by_access_key.len()
    }
}

/// The users file and its current snapshot; shared by the auth check and the handlers.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    current: RwLock<Arc<Users>>,
}

impl UserStore {
    /// Loads `path`.
    ///
    /// # Errors
    /// The file cannot be read or is invalid (see [`Users::parse`]).
    pub fn load(path: &Path) -> anyhow::Result<UserStore> {
        let users = read(path)?;
        Ok(UserStore { path: path.to_owned(), current: RwLock::new(Arc::new(users)) })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Users> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Reads the file again; on error the users already loaded stay.
    ///
    /// # Errors
    /// As [`UserStore::load`].
    pub fn reload(&self) -> anyhow::Result<usize> {
        let users = read(&self.path)?;
        let n = users.len();
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(users);
        Ok(n)
    }
}

fn read(path: &Path) -> anyhow::Result<Users> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read the users file {}", path.display()))?;
    Users::parse(&text).with_context(|| format!("load the users file {}", path.display()))
}

/// The secret-key lookup s3s's signature checks use.
pub struct Auth(pub Arc<UserStore>);

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.snapshot().by_access_key(access_key) {
            Some(user) => Ok(SecretKey::from(user.secret_key.clone())),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[user]]
name = "alice"
access_key = "AK1"
secret_key = "s1"
canonical_id = "c1"
email = "Alice@Example.com"

[[user]]
name = "bob"
access_key = "AK2"
secret_key = "s2"
canonical_id = "c2"
display_name = "Bob B."
"#;

    #[test]
    fn users_are_found_by_key_id_and_email() {
        let users = Users::parse(TWO).expect("parse");
        assert_eq!(users.len(), 2);
        assert_eq!(users.by_access_key("AK1").map(|u| u.name.as_str()), Some("alice"));
        assert_eq!(users.by_canonical_id("c2").map(|u| u.display_name()), Some("Bob B."));
        assert_eq!(users.by_email("alice@example.COM").map(|u| u.name.as_str()), Some("alice"));
        assert!(users.by_access_key("AK3").is_none());
    }

    #[test]
    fn a_duplicated_access_key_refuses_the_file() {
        let text = TWO.replace("AK2", "AK1");
        let err = Users::parse(&text).expect_err("duplicate").to_string();
        assert!(err.contains("AK1"), "{err}");
    }

    #[test]
    fn a_bad_reload_keeps_the_users_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        std::fs::write(&path, TWO).expect("write");
        let store = UserStore::load(&path).expect("load");
        std::fs::write(&path, "[[user]]\nname = 1").expect("write");
        assert!(store.reload().is_err());
        assert_eq!(store.snapshot().len(), 2);
        std::fs::write(&path, TWO.replace("AK2", "AK9")).expect("write");
        assert_eq!(store.reload().expect("reload"), 2);
        assert!(store.snapshot().by_access_key("AK9").is_some());
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let users = Users::parse(TWO).expect("parse");
        let text = format!("{:?}", users.by_access_key("AK1"));
        assert!(!text.contains("s1\""), "{text}");
    }
}
