# synkronus: a static binary on a distroless base, running as a non-root user.
#   docker build -t synkronus --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker compose up   (see compose.yaml and the README)

FROM golang:1.26-bookworm AS build
WORKDIR /src
# The modules first: they are cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG COMMIT=unknown
# CGO_ENABLED=0: a static binary, nothing to link against at run time.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X github.com/opendataensemble/synkronus/server/buildinfo.Commit=${COMMIT}" \
      -o /out/synkronus ./cmd/synkronus \
 && mkdir -p /out/data

# distroless/static: CA certificates (for S3 over HTTPS), time zones and /tmp, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/synkronus /synkronus
# The data directory belongs to the non-root user (uid 65532) the server runs as.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV DATA_DIR=/data \
    PORT=8080 \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/synkronus", "healthcheck"]
ENTRYPOINT ["/synkronus"]
