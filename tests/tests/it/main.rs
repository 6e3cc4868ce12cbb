//! One integration-test binary (one link, parallel tests), against real FerretDB and moto.

mod admission;
mod api_keys;
mod audit_api;
mod binaries;
mod events;
mod identity;
mod isolation_props;
mod migrations_run;
mod personal_data;
mod retention;
mod round_trips;
mod scope;
mod tenants_api;
mod usage;
mod users_api;
