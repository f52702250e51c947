import AsyncHTTPClient
public import Foundation
public import RestartixAWS
public import RestartixKit

extension ServiceEnvironment {
    /// The object store a setting names: the S3 bucket `bucket` when it is set (reached with the
    /// `AWS_*` variables, ``aws(for:)``; a custom `AWS_ENDPOINT_URL_S3` takes the bucket in the
    /// path, AWS's own endpoint in the host name), else the local directory `directory` (created
    /// if missing; `presigning` lets it hand out presigned URLs). The bucket is checked at once
    /// (`HeadBucket`, one connection attempt, 10 s): a missing bucket or an unreachable endpoint
    /// stops the executable at start, not at its first write. `what` names the store in errors
    /// ("backup", "telemetry"), which name the setting and the bucket, never a credential.
    public func objectStore(
        what: String, bucket: String?, directory: String, presigning: LocalObjectStore.Presigning? = nil, timeout: Duration = .seconds(120)
    ) async throws(ConfigurationError) -> (store: any ObjectStore, s3: S3Client?) {
        guard let bucket else {
            do {
                return (try LocalObjectStore(directory: URL(fileURLWithPath: directory), presigning: presigning), nil)
            } catch {
                throw ConfigurationError(.invalidValue, "the \(what) directory \(directory) cannot be used: \(error.detail)")
            }
        }
        let aws = try aws(for: "the \(what) bucket")
        // Fetched now (a role that cannot be assumed stops the executable at start) and again
        // before they expire: the services run for longer than a container role's keys last.
        let credentials: AWSCredentialProvider
        do { credentials = try await AWSCredentialProvider(aws.credentials) } catch {
            throw ConfigurationError(.invalidValue, "the \(what) bucket's AWS credentials could not be obtained: \(error.codeName)")
        }
        let endpoint = aws.endpoint(for: .s3)
        func client(timeout: Duration, httpClient: HTTPClient = .shared) throws -> S3Client {
            try S3Client(
                bucket: bucket, region: aws.region, credentials: credentials, endpoint: endpoint?.absoluteString, usePathStyle: endpoint != nil,
                httpClient: httpClient, timeout: timeout
            )
        }
        // The first call on a client of its own that does not retry a failed connection
        // (AsyncHTTPClient's default tries again until the request's deadline): an unreachable
        // bucket says so at once. Transfers then go through the shared client, which rides out
        // a flaky connect.
        var probeConfiguration = HTTPClient.Configuration()
        probeConfiguration.connectionPool.retryConnectionEstablishment = false
        let probe = HTTPClient(eventLoopGroupProvider: .singleton, configuration: probeConfiguration)
        let exists: Result<Bool, any Error>
        do { exists = .success(try await client(timeout: .seconds(10), httpClient: probe).headBucket()) } catch { exists = .failure(error) }
        try? await probe.shutdown()
        switch exists {
        case .success(true):
            do {
                let transfers = try client(timeout: timeout)
                return (try S3ObjectStore(client: transfers), transfers)
            } catch {
                throw ConfigurationError(.invalidValue, "the \(what) bucket \(bucket) cannot be used: \(safeDescription(of: error))")
            }
        case .success(false):
            throw ConfigurationError(.invalidValue, "the \(what) bucket \(bucket) does not exist (or is in another account)")
        case .failure(let error):
            throw ConfigurationError(.invalidValue, "the \(what) bucket \(bucket) cannot be used: \(safeDescription(of: error))")
        }
    }
}

extension ServiceEnvironment {
    /// A bucket's server-side encryption setting (`key`: none, AES256 or aws:kms, any case;
    /// `kmsKey` names the KMS key of aws:kms): nil for none or unset.
    public func serverSideEncryption(_ key: String, kmsKey: String) throws(ConfigurationError) -> ServerSideEncryption? {
        switch string(key)?.lowercased() {
        case nil, "none": return nil
        case "aes256": return .s3
        case "aws:kms": return .kms(keyID: string(kmsKey))
        default: throw ConfigurationError(.invalidValue, "\(key) must be none, AES256 or aws:kms")
        }
    }

    /// A service's base URL (`key`): http(s), a host, no query; nil when unset.
    public func baseURL(_ key: String) throws(ConfigurationError) -> URL? {
        guard let text = string(key) else { return nil }
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil, url.query == nil else {
            throw ConfigurationError(.invalidValue, "\(key) must be an http(s) URL without a query")
        }
        return url
    }
}
