//! The personal data of user records: sealed on the way in, opened on the way out, and found
//! through the tenant's blind index, never by plaintext once the sealing migration has run
//! (docs/ARCHITECTURE.md §20). Everything that writes or shows a user's e-mail or names goes
//! through here.

use crate::input::ProfileChanges;
use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::db::{Db, DbError};
use shared::ids::{Email, TenantId};
use shared::models::{CognitoLink, Profile, Role, SealedProfile, User, UserStatus};
use shared::pii::{Field, Keyring, PiiError, Sealed};

/// A user record with its personal data opened.
#[derive(Debug, Clone)]
pub struct Person {
    pub user: User,
    pub email: Email,
    pub profile: Profile,
}

/// Opens one value, logging a failed authentication with the record's id (never the value):
/// a tampered or misplaced ciphertext is an error, never garbage and never skipped.
async fn open_field(keys: &Keyring, tenant: &TenantId, id: ObjectId, field: Field, value: &Sealed) -> Result<String, DbError> {
    keys.open(tenant, field, value).await.map_err(|error| {
        if matches!(error, PiiError::Integrity { .. } | PiiError::UnknownVersion { .. }) {
            tracing::error!(tenantId = %tenant, userId = %id, field = field.path(), %error, "a stored personal-data value does not open");
        }
        DbError::Pii(error)
    })
}

async fn open_optional(
    keys: &Keyring,
    tenant: &TenantId,
    id: ObjectId,
    field: Field,
    value: &Option<Sealed>,
) -> Result<Option<String>, DbError> {
    match value {
        Some(v) => Ok(Some(open_field(keys, tenant, id, field, v).await?)),
        None => Ok(None),
    }
}

/// Opens a record's e-mail.
pub async fn email(db: &Db, tenant: &TenantId, user: &User) -> Result<Email, DbError> {
    let text = open_field(db.keyring()?, tenant, user.id, Field::UserEmail, &user.email).await?;
    Email::stored(text).map_err(|_| {
        tracing::error!(tenantId = %tenant, userId = %user.id, "a stored e-mail opens to something that is not an address");
        DbError::Pii(PiiError::Integrity { field: Field::UserEmail.path() })
    })
}

/// Opens a record: its e-mail and profile.
pub async fn open(db: &Db, tenant: &TenantId, user: User) -> Result<Person, DbError> {
    let keys = db.keyring()?;
    let p = &user.profile;
    let profile = Profile {
        first_name: open_field(keys, tenant, user.id, Field::UserFirstName, &p.first_name).await?,
        last_name: open_field(keys, tenant, user.id, Field::UserLastName, &p.last_name).await?,
        avatar: p.avatar.clone(),
        department: open_optional(keys, tenant, user.id, Field::UserDepartment, &p.department).await?,
        title: open_optional(keys, tenant, user.id, Field::UserTitle, &p.title).await?,
    };
    let email = email(db, tenant, &user).await?;
    Ok(Person { user, email, profile })
}

/// Opens every record (one tenant's: its keys are fetched once).
pub async fn open_all(db: &Db, tenant: &TenantId, users: Vec<User>) -> Result<Vec<Person>, DbError> {
    let mut people = Vec::with_capacity(users.len());
    for user in users {
        people.push(open(db, tenant, user).await?);
    }
    Ok(people)
}

async fn seal_optional(keys: &Keyring, tenant: &TenantId, field: Field, value: &Option<String>) -> Result<Option<Sealed>, DbError> {
    match value {
        Some(v) => Ok(Some(keys.seal(tenant, field, v).await?)),
        None => Ok(None),
    }
}

/// Seals a profile for storage.
pub async fn seal_profile(db: &Db, tenant: &TenantId, profile: &Profile) -> Result<SealedProfile, DbError> {
    let keys = db.keyring()?;
    Ok(SealedProfile {
        first_name: keys.seal(tenant, Field::UserFirstName, &profile.first_name).await?,
        last_name: keys.seal(tenant, Field::UserLastName, &profile.last_name).await?,
        avatar: profile.avatar.clone(),
        department: seal_optional(keys, tenant, Field::UserDepartment, &profile.department).await?,
        title: seal_optional(keys, tenant, Field::UserTitle, &profile.title).await?,
    })
}

/// A new pending record with its id fixed up front (the sentinel `pending:<id>` until linked),
/// its personal data sealed and its e-mail's blind index set. Sealing needs the tenant's keys:
/// if KMS is down this fails before anything is written.
pub async fn pending_record(db: &Db, tenant: &TenantId, email: &Email, profile: &Profile, roles: &[Role]) -> Result<User, DbError> {
    let keys = db.keyring()?;
    let id = ObjectId::new();
    Ok(User {
        id,
        tenant_id: None,
        cognito_user_id: CognitoLink::Pending(id),
        email: keys.seal(tenant, Field::UserEmail, email.as_str()).await?,
        email_hash: Some(keys.email_index(tenant, email).await?),
        profile: seal_profile(db, tenant, profile).await?,
        roles: roles.iter().map(|r| r.id.to_hex()).collect(),
        status: UserStatus::Pending,
        // Absent markers: the record holds a seat (and an admin place with the admin role) from its insert (§12).
        seat_held: None,
        admin_held: None,
        marker_op: None,
        last_login_at: None,
        created_at: None,
        updated_at: None,
    })
}

/// The tenant's blind index of `email` (what records hold as `emailHash`): how an audit entry
/// or a log line names an address, never in clear.
pub async fn email_index(db: &Db, tenant: &TenantId, email: &Email) -> Result<String, DbError> {
    Ok(db.keyring()?.email_index(tenant, email).await?)
}

/// The filter that finds the record of `email`: by the blind index and, while records from
/// before encryption may remain (`Db::plaintext_may_remain`), by the old plaintext field too.
pub async fn email_filter(db: &Db, tenant: &TenantId, email: &Email) -> Result<Document, DbError> {
    let hash = email_index(db, tenant, email).await?;
    Ok(if db.plaintext_may_remain().await? {
        doc! {"$or": [{"emailHash": &hash}, {"email": email.as_str()}]}
    } else {
        doc! {"emailHash": hash}
    })
}

/// The `$set` of a profile change, each value sealed.
pub async fn profile_set(db: &Db, tenant: &TenantId, changes: &ProfileChanges) -> Result<Document, DbError> {
    let keys = db.keyring()?;
    let mut set = Document::new();
    for (field, value) in [
        (Field::UserFirstName, &changes.first_name),
        (Field::UserLastName, &changes.last_name),
        (Field::UserDepartment, &changes.department),
        (Field::UserTitle, &changes.title),
    ] {
        if let Some(value) = value {
            set.insert(field.path(), keys.seal(tenant, field, value).await?.to_bson());
        }
    }
    if let Some(avatar) = &changes.avatar {
        set.insert("profile.avatar", avatar);
    }
    Ok(set)
}
