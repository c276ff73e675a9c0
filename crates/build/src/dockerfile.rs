//! The Dockerfile grammar (to be written).
