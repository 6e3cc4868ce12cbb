//! The local stand-in for API Gateway and Cognito's authorizer, and the local user pool's
//! bootstrap.

pub mod cognito;
