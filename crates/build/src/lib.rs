//! `berth build`: a Dockerfile and a context directory into an image in berth's store (issue 6).
//! This first part reads the inputs: the Dockerfile's grammar (`dockerfile`) and `.dockerignore` with the
//! context it selects (`ignore`).

pub mod add;
pub mod cache;
pub mod dockerfile;
pub mod exec;
pub mod ignore;
pub mod plan;
pub mod stage;
pub mod steps;
