//! Native node bootstrap: the Talos worker configuration, Tailscale enrolment and the Node
//! operations (registration checks, cordon, drain, delete). Never calls plugins.
