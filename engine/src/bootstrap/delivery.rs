//! How the worker configuration reaches the machine. Exists because clouds differ: a Talos
//! image reads the machine configuration straight from user-data, while a cloud that only
//! boots its own Linux images runs cloud-init, which must first turn the VM into Talos.
//!
//! - [`Delivery::TalosUserData`]: the Talos configuration is the user-data, unchanged.
//! - [`Delivery::CloudInit`]: **EXPERIMENTAL.** A `#cloud-config` that downloads the Talos
//!   kernel and initramfs of the schematic from the Image Factory and `kexec`s into them,
//!   handing over the configuration on a small ISO 9660 volume labelled `metal-iso`
//!   (`talos.config=metal-iso`). Talos has no official support for this path; see
//!   [`user_data`] for what it needs from the VM.

use serde::Serialize;

use super::talos_config::ConfigError;
use super::validate;

/// How user-data carries the Talos configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The machine boots a Talos image that reads its configuration from user-data.
    TalosUserData,
    /// EXPERIMENTAL: the machine boots a cloud-init Linux that kexecs into Talos.
    CloudInit,
}

/// Where the Talos boot assets of a schematic come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootAssets {
    /// e.g. `https://factory.talos.dev`
    pub factory_url: String,
    pub schematic_id: String,
    /// e.g. `v1.11.3`
    pub talos_version: String,
}

/// Directory on the cloud-init VM holding the configuration, the boot script and the assets.
pub const WORK_DIR: &str = "/var/lib/tgp/talos";
/// The Talos configuration written by the cloud-init document.
pub const CONFIG_PATH: &str = "/var/lib/tgp/talos/config.yaml";
/// The script that builds the config volume and kexecs into Talos.
pub const SCRIPT_PATH: &str = "/var/lib/tgp/talos/kexec-talos.sh";

/// The kernel command line of the kexec'd Talos: the metal platform reading its configuration
/// from the `metal-iso` volume, serial and VGA consoles, and Talos's default hardening arguments.
pub const KEXEC_CMDLINE: &str = "talos.platform=metal talos.config=metal-iso console=tty0 console=ttyS0,115200n8 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on";

impl BootAssets {
    /// The factory's base URL without a trailing `/`, after checking every field.
    fn checked_base(&self) -> Result<String, ConfigError> {
        let bad = |reason: &str| ConfigError::new("boot.factory_url", reason);
        let url = url::Url::parse(&self.factory_url)
            .map_err(|_| bad("must be a URL such as https://factory.talos.dev"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(bad(
                "must be an http(s) URL such as https://factory.talos.dev",
            ));
        }
        if url.host_str().is_none() {
            return Err(bad("has no host"));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(bad("must not carry credentials, a query or a fragment"));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        // It goes into a shell script between single quotes.
        if !base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]%".contains(&b))
        {
            return Err(bad("contains characters not allowed in a factory URL"));
        }
        validate::schematic_id(&self.schematic_id)
            .map_err(|r| ConfigError::new("boot.schematic_id", r))?;
        validate::talos_version(&self.talos_version)
            .map_err(|r| ConfigError::new("boot.talos_version", r))?;
        Ok(base)
    }

    /// `{factory}/image/{schematic}/{version}/kernel-amd64`
    pub fn kernel_url(&self) -> Result<String, ConfigError> {
        Ok(format!("{}/kernel-amd64", self.image_base()?))
    }

    /// `{factory}/image/{schematic}/{version}/initramfs-amd64.xz`
    pub fn initramfs_url(&self) -> Result<String, ConfigError> {
        Ok(format!("{}/initramfs-amd64.xz", self.image_base()?))
    }

    fn image_base(&self) -> Result<String, ConfigError> {
        Ok(format!(
            "{}/image/{}/{}",
            self.checked_base()?,
            self.schematic_id,
            self.talos_version
        ))
    }
}

#[derive(Serialize)]
struct CloudConfig<'a> {
    write_files: Vec<WriteFile<'a>>,
    runcmd: Vec<Vec<&'static str>>,
}

#[derive(Serialize)]
struct WriteFile<'a> {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    content: &'a str,
}

/// The boot script. Only validated values are interpolated (hex id, version, a URL of safe
/// characters), each inside single quotes.
fn kexec_script(kernel_url: &str, initramfs_url: &str) -> String {
    format!(
        r#"#!/bin/sh
# tgp (EXPERIMENTAL): turn this cloud-init VM into a Talos worker by kexec.
set -eu
dir='{WORK_DIR}'
kernel_url='{kernel_url}'
initramfs_url='{initramfs_url}'
cmdline='{KEXEC_CMDLINE}'

log() {{ echo "tgp-talos-kexec: $*"; echo "tgp-talos-kexec: $*" >/dev/console 2>/dev/null || true; }}
have() {{ command -v "$1" >/dev/null 2>&1; }}
have_iso() {{ have genisoimage || have mkisofs || have xorriso; }}

if ! have kexec || ! have curl || ! have_iso; then
  log "installing kexec-tools, curl and an ISO 9660 tool"
  if have apt-get; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q kexec-tools curl genisoimage
  elif have dnf; then
    dnf install -y kexec-tools curl xorriso
  elif have yum; then
    yum install -y kexec-tools curl genisoimage
  fi
fi

log "downloading Talos kernel and initramfs"
curl -fsSL --retry 5 --retry-delay 5 -o "$dir/kernel-amd64" "$kernel_url"
curl -fsSL --retry 5 --retry-delay 5 -o "$dir/initramfs-amd64.xz" "$initramfs_url"

# The configuration volume Talos reads with talos.config=metal-iso: ISO 9660, label metal-iso,
# config.yaml at its root.
rm -rf "$dir/iso" && mkdir -p "$dir/iso"
cp "$dir/config.yaml" "$dir/iso/config.yaml"
if have genisoimage; then
  genisoimage -quiet -joliet -rock -volid metal-iso -output "$dir/config.iso" "$dir/iso"
elif have mkisofs; then
  mkisofs -quiet -joliet -rock -volid metal-iso -output "$dir/config.iso" "$dir/iso"
else
  xorriso -as mkisofs -quiet -joliet -rock -volid metal-iso -output "$dir/config.iso" "$dir/iso"
fi

# Load the kernel first: nothing below is destructive until it is in memory.
kexec -l "$dir/kernel-amd64" --initrd="$dir/initramfs-amd64.xz" --command-line="$cmdline"

# A block device that carries the volume across the kexec: a swap partition, else the EFI
# system partition, else /boot. The machine is reinstalled by Talos afterwards.
target=""
swap=$(awk 'NR > 1 && $2 == "partition" {{ print $1; exit }}' /proc/swaps)
if [ -n "$swap" ] && swapoff "$swap"; then target="$swap"; fi
if [ -z "$target" ]; then
  for mnt in /boot/efi /boot; do
    src=$(findmnt -n -o SOURCE "$mnt" 2>/dev/null || true)
    if [ -n "$src" ] && [ -b "$src" ] && umount "$mnt"; then target="$src"; break; fi
  done
fi
if [ -z "$target" ]; then
  log "no swap, EFI or /boot partition can hold the metal-iso volume; not booting Talos"
  exit 1
fi
if [ "$(blockdev --getsize64 "$target")" -lt "$(stat -c %s "$dir/config.iso")" ]; then
  log "$target is too small for the metal-iso volume; not booting Talos"
  exit 1
fi
log "writing the metal-iso volume to $target and booting Talos"
dd if="$dir/config.iso" of="$target" bs=1M conv=fsync
sync
kexec -e
"#
    )
}

/// The user-data for `delivery`.
///
/// `TalosUserData` returns `talos_config` unchanged; `boot` is not used.
///
/// `CloudInit` (EXPERIMENTAL) returns a `#cloud-config` document that writes `talos_config` to
/// [`CONFIG_PATH`] and a script to [`SCRIPT_PATH`], then runs the script, which:
/// downloads [`BootAssets::kernel_url`] and [`BootAssets::initramfs_url`]; builds an ISO 9660
/// volume labelled `metal-iso` holding `config.yaml`; loads the kernel with
/// [`KEXEC_CMDLINE`]; writes the volume over a swap, EFI system or `/boot` partition (the disk is
/// reinstalled by Talos anyway); and `kexec -e`. It needs an amd64 VM with root, a package
/// manager (apt, dnf or yum) or the tools already present, and a kernel that allows kexec
/// (Secure Boot lockdown forbids it). Nothing is verified beyond TLS: the factory publishes no
/// checksums for boot assets.
pub fn user_data(
    delivery: Delivery,
    talos_config: &str,
    boot: &BootAssets,
) -> Result<String, ConfigError> {
    if talos_config.trim().is_empty() {
        return Err(ConfigError::new("talos_config", "is empty"));
    }
    match delivery {
        Delivery::TalosUserData => Ok(talos_config.to_string()),
        Delivery::CloudInit => {
            let script = kexec_script(&boot.kernel_url()?, &boot.initramfs_url()?);
            let doc = CloudConfig {
                write_files: vec![
                    WriteFile {
                        path: CONFIG_PATH,
                        owner: "root:root",
                        permissions: "0600",
                        content: talos_config,
                    },
                    WriteFile {
                        path: SCRIPT_PATH,
                        owner: "root:root",
                        permissions: "0700",
                        content: &script,
                    },
                ],
                runcmd: vec![vec!["/bin/sh", SCRIPT_PATH]],
            };
            let body = serde_yaml::to_string(&doc).map_err(|e| {
                ConfigError::new("cloud-config", format!("could not serialise: {e}"))
            })?;
            Ok(format!("#cloud-config\n{body}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;

    const SCHEMATIC: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
    const CONFIG: &str = "version: v1alpha1\nmachine:\n  type: worker\n  token: 'x: y'\n---\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: tailscale\nenvironment:\n  - TS_AUTHKEY=tskey-auth-abc\n";

    fn boot() -> BootAssets {
        BootAssets {
            factory_url: "https://factory.talos.dev".into(),
            schematic_id: SCHEMATIC.into(),
            talos_version: "v1.11.3".into(),
        }
    }

    #[test]
    fn talos_user_data_is_the_config_unchanged() {
        assert_eq!(
            user_data(Delivery::TalosUserData, CONFIG, &boot()).unwrap(),
            CONFIG
        );
        // The boot assets do not matter for this delivery.
        let unused = BootAssets {
            factory_url: String::new(),
            ..boot()
        };
        assert_eq!(
            user_data(Delivery::TalosUserData, CONFIG, &unused).unwrap(),
            CONFIG
        );
    }

    #[test]
    fn cloud_init_document() {
        let text = user_data(Delivery::CloudInit, CONFIG, &boot()).unwrap();
        assert_eq!(text.lines().next(), Some("#cloud-config"));
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let files = doc["write_files"].as_sequence().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["path"].as_str(), Some(CONFIG_PATH));
        assert_eq!(files[0]["permissions"].as_str(), Some("0600"));
        assert_eq!(files[0]["owner"].as_str(), Some("root:root"));
        assert_eq!(files[0]["content"].as_str(), Some(CONFIG), "verbatim");
        assert_eq!(files[1]["path"].as_str(), Some(SCRIPT_PATH));
        assert_eq!(files[1]["permissions"].as_str(), Some("0700"));
        let script = files[1]["content"].as_str().unwrap();
        let kernel = format!("https://factory.talos.dev/image/{SCHEMATIC}/v1.11.3/kernel-amd64");
        let initramfs =
            format!("https://factory.talos.dev/image/{SCHEMATIC}/v1.11.3/initramfs-amd64.xz");
        assert_eq!(boot().kernel_url().unwrap(), kernel);
        assert_eq!(boot().initramfs_url().unwrap(), initramfs);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains(&format!("kernel_url='{kernel}'")),
            "{script}"
        );
        assert!(script.contains(&format!("initramfs_url='{initramfs}'")));
        assert!(script.contains(&format!("cmdline='{KEXEC_CMDLINE}'")));
        assert!(KEXEC_CMDLINE.starts_with("talos.platform=metal talos.config=metal-iso "));
        assert!(KEXEC_CMDLINE.contains("console=ttyS0,115200n8"));
        assert!(script.contains("-volid metal-iso"));
        assert!(script.contains("cp \"$dir/config.yaml\" \"$dir/iso/config.yaml\""));
        assert!(script.contains("kexec -l") && script.trim_end().ends_with("kexec -e"));
        // The kernel is loaded before anything destructive happens.
        assert!(script.find("kexec -l").unwrap() < script.find("swapoff").unwrap());
        assert!(script.find("kexec -l").unwrap() < script.find("dd if=").unwrap());
        let runcmd: Vec<Vec<String>> = serde_yaml::from_value(doc["runcmd"].clone()).unwrap();
        assert_eq!(
            runcmd,
            [vec!["/bin/sh".to_string(), SCRIPT_PATH.to_string()]]
        );
        // Only the documented top-level keys.
        let keys: Vec<&str> = doc
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, ["write_files", "runcmd"]);
    }

    #[test]
    fn the_boot_script_is_valid_shell() {
        let text = user_data(Delivery::CloudInit, CONFIG, &boot()).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let script = doc["write_files"][1]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let path = std::env::temp_dir().join(format!("tgp-kexec-{}.sh", std::process::id()));
        std::fs::write(&path, script).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let out = out.expect("sh runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn factory_url_with_port_and_slash() {
        let b = BootAssets {
            factory_url: "http://127.0.0.1:8080/".into(),
            ..boot()
        };
        assert_eq!(
            b.kernel_url().unwrap(),
            format!("http://127.0.0.1:8080/image/{SCHEMATIC}/v1.11.3/kernel-amd64")
        );
    }

    #[test]
    fn refuses_bad_input() {
        let e = user_data(Delivery::TalosUserData, " \n", &boot()).unwrap_err();
        assert_eq!(e.field, "talos_config");
        let field = |b: BootAssets| {
            user_data(Delivery::CloudInit, CONFIG, &b)
                .unwrap_err()
                .field
        };
        for url in [
            "factory.talos.dev",
            "ftp://factory.talos.dev",
            "https://u:p@factory.talos.dev",
            "https://factory.talos.dev/?x=1",
            "https://factory.talos.dev/it's",
            "",
        ] {
            assert_eq!(
                field(BootAssets {
                    factory_url: url.into(),
                    ..boot()
                }),
                "boot.factory_url",
                "{url}"
            );
        }
        assert_eq!(
            field(BootAssets {
                schematic_id: "x".into(),
                ..boot()
            }),
            "boot.schematic_id"
        );
        assert_eq!(
            field(BootAssets {
                talos_version: "1.11".into(),
                ..boot()
            }),
            "boot.talos_version"
        );
    }
}
