# Trusts the build machine's extra CA (e.g. an intercepting proxy's) while the box is built,
# for apt, pip and npm; scripts/cleanup.sh removes it. EXTRA_CA_PEM_B64: the PEMs, base64.
[ -n "${EXTRA_CA_PEM_B64:-}" ] || exit 0
# one certificate per file, as update-ca-certificates wants
echo "$EXTRA_CA_PEM_B64" | base64 -d | awk '/BEGIN CERTIFICATE/ { n++ } n { print > ("/usr/local/share/ca-certificates/packer-build-" n ".crt") }'
update-ca-certificates >/dev/null
bundle=/etc/ssl/certs/ca-certificates.crt
printf '[global]\ncert = %s\n' "$bundle" >/etc/pip.conf
printf 'NODE_EXTRA_CA_CERTS=%s\nREQUESTS_CA_BUNDLE=%s\n' "$bundle" "$bundle" >>/etc/environment
