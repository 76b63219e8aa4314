# balance in an image with nothing else: the musl binary, the loader and the
# two C++ runtime libraries it links, and /etc/services for port names.
#   ./scripts/build && docker build -t balance .
#   docker run --network host balance 8080 10.0.0.1:80 10.0.0.2:80
# (scripts/container-smoke builds the same kind of root filesystem in a folder
# and runs it with chroot, since this build machine has no Docker engine.)
FROM alpine:3.20 AS libs
ARG TARGETARCH=amd64
RUN apk add --no-cache libstdc++ libgcc
COPY dist/balance-linux-x64-musl dist/balance-linux-arm64-musl /dist/
RUN set -eu; \
    case "$TARGETARCH" in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "no binary for $TARGETARCH" >&2; exit 1 ;; esac; \
    mkdir -p /rootfs/lib /rootfs/usr/lib /rootfs/usr/bin /rootfs/etc; \
    cp -L /lib/ld-musl-*.so.1 /rootfs/lib/; \
    cp -L /usr/lib/libstdc++.so.6 /usr/lib/libgcc_s.so.1 /rootfs/usr/lib/; \
    cp /etc/services /rootfs/etc/services; \
    install -m 0755 "/dist/balance-linux-$arch-musl" /rootfs/usr/bin/balance

FROM scratch
COPY --from=libs /rootfs/ /
USER 65534:65534
ENTRYPOINT ["/usr/bin/balance", "-f"]
