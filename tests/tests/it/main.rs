//! One integration-test binary (one link, parallel tests), against real FerretDB and moto.

mod admission;
mod api_keys;
mod audit_api;
mod binaries;
mod counters;
mod events;
mod faults;
mod identity;
mod invitation_oracle;
mod isolation_props;
mod issuance;
mod local_control;
mod migrations_run;
mod personal_data;
mod refusals;
mod retention;
mod roles_api;
mod round_trips;
mod sagas;
mod scope;
mod shredded;
mod tenants_api;
mod usage;
mod users_api;
