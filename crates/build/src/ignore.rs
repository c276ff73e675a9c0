//! .dockerignore and the build context (to be written).
