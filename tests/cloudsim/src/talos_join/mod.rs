//! Simulated Talos join: a booted simulated instance with a valid worker configuration
//! registers a Node.
