public import RestartixAWS
import Foundation
public import RestartixKit

extension ServiceEnvironment {
    /// The AWS configuration, as the AWS SDKs name its variables: `AWS_REGION` (else
    /// `AWS_DEFAULT_REGION`); `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`, else the container credential endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`);
    /// `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`.
    ///
    /// `purpose` names what needs AWS in the errors ("the keyring secret"). A missing region or
    /// credentials, one key without the other, or an endpoint that is not an http(s) URL is a
    /// ``ConfigurationError`` naming the key, never its value.
    public func aws(for purpose: String) throws(ConfigurationError) -> AWSConfiguration {
        guard let region = string("AWS_REGION") ?? string("AWS_DEFAULT_REGION") else {
            throw ConfigurationError(.missing, "AWS_REGION must be set for \(purpose)")
        }
        guard let credentials = try awsCredentials() else {
            throw ConfigurationError(
                .missing,
                "\(purpose) needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a task role (AWS_CONTAINER_CREDENTIALS_*)"
            )
        }
        var endpoints: [AWSService: URL] = [:]
        for service in [AWSService.secretsManager, .kms, .s3, .sesv2] {
            if let url = try endpointURL("AWS_ENDPOINT_URL_\(service.rawValue)") { endpoints[service] = url }
        }
        return AWSConfiguration(region: region, credentials: credentials, endpoints: endpoints, defaultEndpoint: try endpointURL("AWS_ENDPOINT_URL"))
    }

    /// The credential source the variables configure; nil when none is.
    public func awsCredentials() throws(ConfigurationError) -> AWSCredentialSource? {
        switch (string("AWS_ACCESS_KEY_ID"), string("AWS_SECRET_ACCESS_KEY")) {
        case (let id?, let secret?):
            return .static(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: string("AWS_SESSION_TOKEN")))
        case (nil, nil): break
        default: throw ConfigurationError(.invalidValue, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all")
        }
        if let relative = string("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            return .container(AWSContainerCredentials(relativeURI: relative))
        }
        guard let full = string("AWS_CONTAINER_CREDENTIALS_FULL_URI") else { return nil }
        let authorization: AWSContainerCredentials.Authorization? =
            if let file = string("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") { .tokenFile(path: file) }
            else { string("AWS_CONTAINER_AUTHORIZATION_TOKEN").map { .token($0) } }
        do { return .container(try AWSContainerCredentials(fullURI: full, authorization: authorization)) } catch {
            throw ConfigurationError(.invalidValue, error.detail)
        }
    }

    private func endpointURL(_ key: String) throws(ConfigurationError) -> URL? {
        guard let text = string(key) else { return nil }
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw ConfigurationError(.invalidValue, "\(key) must be an http(s) URL")
        }
        return url
    }
}
