//! The wire protocols, one folder each: [`native`] (`/v1`, JSON), [`ec2`] (`/ec2`,
//! the AWS Query protocol) and [`cimi`] (`/cimi`, DMTF CIMI in JSON and XML). Each
//! parses and authenticates a request, calls the [service](crate::service) and renders
//! its answer; none names another, and none touches the store or a driver. What they
//! share is plumbing: [`body`] and [`url`].

pub mod body;
pub mod cimi;
pub mod ec2;
pub mod native;
pub mod url;
