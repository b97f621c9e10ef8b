//! The wire protocols, one folder each: [`native`] (`/v1`, JSON) and [`ec2`] (`/ec2`,
//! the AWS Query protocol). Each parses and authenticates a request, calls the
//! [service](crate::service) and renders its answer; none names another, and none
//! touches the store or a driver. What they share is plumbing: [`body`].

pub mod body;
pub mod ec2;
pub mod native;
