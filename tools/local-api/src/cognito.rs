//! The local user pool in moto: bootstrap (idempotent), demo users and their ID tokens.

use crate::BoxError;
use aws_sdk_cognitoidentityprovider::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata;
use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, AttributeDataType, AttributeType, AuthFlowType, ExplicitAuthFlowsType, MessageActionType,
    PasswordPolicyType, PreventUserExistenceErrorTypes, SchemaAttributeType, StringAttributeConstraintsType,
    UserAttributeUpdateSettingsType, UserPoolPolicyType, UsernameAttributeType, VerifiedAttributeType,
};
use aws_sdk_cognitoidentityprovider::Client;
use shared::identity::SUPERADMIN_GROUP;

/// The ids a bootstrapped pool is known by, and where its tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolIds {
    pub region: String,
    pub user_pool_id: String,
    pub client_id: String,
    pub issuer: String,
    pub jwks_url: String,
}

impl PoolIds {
    /// As `KEY=value` lines for a shell.
    pub fn to_env(&self) -> String {
        format!(
            "COGNITO_REGION={}\nCOGNITO_USER_POOL_ID={}\nCOGNITO_CLIENT_ID={}\nCOGNITO_ISSUER={}\nCOGNITO_JWKS_URL={}\n",
            self.region, self.user_pool_id, self.client_id, self.issuer, self.jwks_url
        )
    }
}

/// The AWS SDK configuration of every local client of moto. Credentials are explicit fakes and
/// the endpoint is given, so the SDK never looks for real credentials or calls out (no
/// instance-metadata probing).
pub fn moto_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cognitoidentityprovider::config::SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "local-fake",
        )))
        .build()
}

/// A Cognito client for moto.
pub fn client(endpoint: &str, region: &str) -> Client {
    Client::new(&moto_config(endpoint, region))
}

const APP_CLIENT_NAME: &str = "tenancy-local-app";

/// Makes (or finds) the pool as template.yaml declares it: e-mail as username, a `tenantId`
/// custom attribute, admin-only user creation (no self sign-up), verification before an e-mail
/// change, the template's password policy, the `superadmin` group, and an app client that may
/// read but never write `custom:tenantId`. moto stores these settings but enforces neither
/// admin-only creation nor the client's write attributes (see the README): the local stack is
/// for loopback only.
pub async fn bootstrap(cognito: &Client, endpoint: &str, region: &str, pool_name: &str) -> Result<PoolIds, BoxError> {
    // Every page: a test run leaves hundreds of pools, and a pool missed here would be created
    // again under the same (name-derived) id, emptied.
    let mut next: Option<String> = None;
    let existing = loop {
        let page = cognito.list_user_pools().max_results(60).set_next_token(next.take()).send().await?;
        let found = page.user_pools().iter().find(|p| p.name() == Some(pool_name)).and_then(|p| p.id().map(str::to_owned));
        next = page.next_token().map(str::to_owned);
        if found.is_some() || next.is_none() {
            break found;
        }
    };
    let user_pool_id = match existing {
        Some(id) => id,
        None => cognito
            .create_user_pool()
            .pool_name(pool_name)
            .username_attributes(UsernameAttributeType::Email)
            .auto_verified_attributes(VerifiedAttributeType::Email)
            .admin_create_user_config(AdminCreateUserConfigType::builder().allow_admin_create_user_only(true).build())
            .user_attribute_update_settings(
                UserAttributeUpdateSettingsType::builder()
                    .attributes_require_verification_before_update(VerifiedAttributeType::Email)
                    .build(),
            )
            .policies(
                UserPoolPolicyType::builder()
                    .password_policy(
                        PasswordPolicyType::builder()
                            .minimum_length(12)
                            .require_lowercase(true)
                            .require_uppercase(true)
                            .require_numbers(true)
                            .require_symbols(true)
                            .temporary_password_validity_days(7)
                            .build(),
                    )
                    .build(),
            )
            .schema(
                SchemaAttributeType::builder()
                    .name("tenantId")
                    .attribute_data_type(AttributeDataType::String)
                    .mutable(true)
                    .string_attribute_constraints(StringAttributeConstraintsType::builder().min_length("1").max_length("64").build())
                    .build(),
            )
            .send()
            .await?
            .user_pool()
            .and_then(|p| p.id())
            .ok_or("moto returned a pool without an id")?
            .to_owned(),
    };

    if cognito.get_group().user_pool_id(&user_pool_id).group_name(SUPERADMIN_GROUP).send().await.is_err() {
        cognito.create_group().user_pool_id(&user_pool_id).group_name(SUPERADMIN_GROUP).description("Platform operators").send().await?;
    }

    let clients = cognito.list_user_pool_clients().user_pool_id(&user_pool_id).max_results(60).send().await?;
    let existing = clients
        .user_pool_clients()
        .iter()
        .find(|c| c.client_name() == Some(APP_CLIENT_NAME))
        .and_then(|c| c.client_id().map(str::to_owned));
    let client_id = match existing {
        Some(id) => id,
        None => cognito
            .create_user_pool_client()
            .user_pool_id(&user_pool_id)
            .client_name(APP_CLIENT_NAME)
            .generate_secret(false)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .read_attributes("email")
            .read_attributes("email_verified")
            .read_attributes("custom:tenantId")
            // Users must never write their own tenantId: only the platform (admin API) sets it.
            .write_attributes("email")
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
            .send()
            .await?
            .user_pool_client()
            .and_then(|c| c.client_id())
            .ok_or("moto returned a client without an id")?
            .to_owned(),
    };

    let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}");
    let jwks_url = format!("{}/{user_pool_id}/.well-known/jwks.json", endpoint.trim_end_matches('/'));
    Ok(PoolIds { region: region.to_owned(), user_pool_id, client_id, issuer, jwks_url })
}

/// Makes (or updates) a confirmed user with a permanent password, an optional tenant and
/// groups; returns its `sub`.
pub async fn ensure_user(
    cognito: &Client,
    pool: &PoolIds,
    email: &str,
    password: &str,
    tenant: Option<&str>,
    groups: &[&str],
) -> Result<String, BoxError> {
    let mut attributes = vec![
        AttributeType::builder().name("email").value(email).build()?,
        AttributeType::builder().name("email_verified").value("true").build()?,
    ];
    if let Some(tenant) = tenant {
        attributes.push(AttributeType::builder().name("custom:tenantId").value(tenant).build()?);
    }
    let created = cognito
        .admin_create_user()
        .user_pool_id(&pool.user_pool_id)
        .username(email)
        .message_action(MessageActionType::Suppress)
        .set_user_attributes(Some(attributes.clone()))
        .send()
        .await;
    if let Err(e) = created {
        let exists = e.as_service_error().is_some_and(|s| s.is_username_exists_exception() || s.code() == Some("AliasExistsException"));
        if !exists {
            return Err(e.into());
        }
        // The e-mail is the username and stays as it is (moto refuses to "change" it to itself).
        let others: Vec<AttributeType> = attributes.into_iter().filter(|a| a.name() != "email").collect();
        cognito
            .admin_update_user_attributes()
            .user_pool_id(&pool.user_pool_id)
            .username(email)
            .set_user_attributes(Some(others))
            .send()
            .await?;
    }
    cognito.admin_set_user_password().user_pool_id(&pool.user_pool_id).username(email).password(password).permanent(true).send().await?;
    for group in groups {
        cognito.admin_add_user_to_group().user_pool_id(&pool.user_pool_id).username(email).group_name(*group).send().await?;
    }
    let user = cognito.admin_get_user().user_pool_id(&pool.user_pool_id).username(email).send().await?;
    let sub = user.user_attributes().iter().find(|a| a.name() == "sub").and_then(|a| a.value()).unwrap_or(user.username());
    Ok(sub.to_owned())
}

/// Signs a user in with ADMIN_USER_PASSWORD_AUTH and returns its ID token.
pub async fn id_token(cognito: &Client, pool: &PoolIds, email: &str, password: &str) -> Result<String, BoxError> {
    let auth = cognito
        .admin_initiate_auth()
        .user_pool_id(&pool.user_pool_id)
        .client_id(&pool.client_id)
        .auth_flow(AuthFlowType::AdminUserPasswordAuth)
        .auth_parameters("USERNAME", email)
        .auth_parameters("PASSWORD", password)
        .send()
        .await?;
    Ok(auth.authentication_result().and_then(|r| r.id_token()).ok_or("no ID token in the auth result")?.to_owned())
}
