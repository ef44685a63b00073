//! The Tailscale API personality (OAuth token, auth keys, devices).
