# Build a static fnmarket binary (pure Go: no cgo, the SQLite driver included).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fnmarket ./cmd/fnmarket \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fnmarket /usr/local/bin/fnmarket
# The data dir (spool, wasm compilation cache, embedded default's files) must be
# writable by the nonroot user; a named volume mounted here starts with this
# ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/fnmarket
ENV FNMARKET_ADDR=0.0.0.0:8080 FNMARKET_DATA_DIR=/var/lib/fnmarket
VOLUME /var/lib/fnmarket
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/fnmarket"]
CMD ["serve"]
