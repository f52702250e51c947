import Foundation
import Logging
import PlatformSupport
import RestartixAWS
import RestartixKit
import RestartixPlatform
import RestartixProviders
import RestartixTenancy
@testable import ServiceSupport
import Testing

/// The executables' one configuration layer (ServiceSupport): every key documented once,
/// secrets marked and never echoed, one reading of the shared keys, one logging bootstrap.
@Suite("Service configuration")
struct ServiceConfigurationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let page = root.appendingPathComponent("Documentation/Configuration.md")
    static let begin = "<!-- keys:begin (generated from ServiceKeys.all; RESTARTIX_WRITE_DOCS=1 swift test --filter ServiceConfiguration rewrites it) -->"
    static let end = "<!-- keys:end -->"

    @Test("Documentation/Configuration.md carries exactly the generated key table")
    func pageIsCurrent() throws {
        let text = try String(contentsOf: Self.page, encoding: .utf8)
        let head = try #require(text.components(separatedBy: Self.begin).first)
        let tail = try #require(text.components(separatedBy: Self.end).last)
        let wanted = head + Self.begin + "\n" + ServiceKeys.markdown + "\n" + Self.end + tail
        if ProcessInfo.processInfo.environment["RESTARTIX_WRITE_DOCS"] == "1", wanted != text {
            try Data(wanted.utf8).write(to: Self.page)
            return
        }
        #expect(text.contains(Self.begin) && text.contains(Self.end), "the page lost its markers")
        #expect(wanted == text, "Documentation/Configuration.md is stale: RESTARTIX_WRITE_DOCS=1 swift test --filter ServiceConfiguration")
    }

    @Test("every variable the shells and libraries read is in the table, each once")
    func everyKeyListed() throws {
        let names = ServiceKeys.all.map(\.name)
        #expect(Set(names).count == names.count, "a key is listed twice")
        // Variable names as the code spells them where it reads one: `service.string("X")`,
        // `environment["X"]`, `value("X")` (provider seeds), pool sizes.
        // NSRegularExpression: Swift's Regex over every source file kept a cooperative thread
        // busy long enough to delay other suites' timers.
        let pattern = try NSRegularExpression(pattern: #"(?:string|int|value|applyPoolSize|environment\[|variables\[)\(?"([A-Z][A-Z0-9_]{2,})""#)
        var read = Set<String>()
        for directory in ["Sources/Shells", "Sources/RestartixProviders", "Sources/RestartixPlatform", "Sources/RestartixAWS"] {
            let files = FileManager.default.enumerator(atPath: Self.root.appendingPathComponent(directory).path)
            while let file = files?.nextObject() as? String {
                guard file.hasSuffix(".swift") else { continue }
                let text = try String(contentsOf: Self.root.appendingPathComponent(directory).appendingPathComponent(file), encoding: .utf8)
                let range = NSRange(text.startIndex..., in: text)
                for match in pattern.matches(in: text, range: range) {
                    if let name = Range(match.range(at: 1), in: text) { read.insert(String(text[name])) }
                }
            }
        }
        #expect(read.count > 30, "the scan found too little to mean anything: \(read.sorted())")
        let missing = read.subtracting(names).sorted()
        #expect(missing.isEmpty, "read but not documented in ServiceKeys.all: \(missing)")
    }

    @Test("keys that name a credential are marked secret")
    func secretsMarked() {
        let credentialWords = ["SECRET", "TOKEN", "PASSWORD", "_API_KEY", "_KEYS", "ACCESS_KEY", "DATABASE_URL", "DATABASE_APP_URL", "REDIS_URL"]
        // Names that mention a credential without holding one: where to find it.
        let pointers: Set<String> = [
            "ENCRYPTION_KEYS_FILE", "ENCRYPTION_KEYS_SECRET_ID", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ]
        for key in ServiceKeys.all where credentialWords.contains(where: key.name.contains) && !pointers.contains(key.name) {
            #expect(key.isSecret, "\(key.name) holds a credential but is not marked secret")
        }
        #expect(ServiceKeys.secretNames.contains("DATABASE_DIRECT_URL"), "database URLs carry passwords")
    }

    @Test("the shared keys read the same way everywhere; a bad value is an error that never echoes it")
    func sharedKeys() throws {
        let service = ServiceEnvironment(["HOST": "0.0.0.0", "PORT": "9000", "LOG_LEVEL": "DEBUG", "APP_ENV": "production", "DB_POOL_MAX": "25"])
        let (host, port) = try service.listenAddress(defaultPort: 8081)
        #expect(host == "0.0.0.0" && port == 9000)
        #expect(try service.logLevel() == .debug)
        #expect(try service.logFormat(for: service.deployment()) == .json, "JSON lines by default in production")
        #expect(try ServiceEnvironment([:]).logFormat(for: .development) == .text)
        #expect(try ServiceEnvironment(["LOG_FORMAT": "text"]).logFormat(for: .production) == .text)
        var configuration = DatabaseConfiguration(sqlitePath: "/tmp/x.sqlite")
        try service.applyPoolSize("DB_POOL_MAX", to: &configuration)
        #expect(configuration.maximumConnections == 25)
        #expect(try ServiceEnvironment(["PORT": ""]).listenAddress(defaultPort: 8081).port == 8081, "an empty variable counts as unset")

        for (key, value) in [("PORT", "hunter2-port"), ("LOG_LEVEL", "hunter2-level"), ("LOG_FORMAT", "hunter2-format"), ("DB_POOL_MAX", "hunter2"),
                             ("APP_ENV", "hunter2-env"), ("DB_POOL_MAX", "0")] {
            let bad = ServiceEnvironment([key: value])
            let error = #expect(throws: ConfigurationError.self, "\(key)") {
                _ = try bad.listenAddress(defaultPort: 1)
                _ = try bad.logLevel()
                _ = try bad.logFormat(for: try bad.deployment())
                var configuration = DatabaseConfiguration(sqlitePath: "/tmp/x.sqlite")
                try bad.applyPoolSize("DB_POOL_MAX", to: &configuration)
            }
            #expect(error?.description.contains(key) == true, "the error names the key")
            #expect(error?.description.contains("hunter2") == false, "the error never echoes the value")
            #expect(error?.httpStatus == 500 && error?.identifier == "configuration.invalidValue")
        }
    }

    @Test("token secrets: current then previous; none is nil; short, or a previous alone, refused by name without the value")
    func tokenSecrets() throws {
        let current = String(repeating: "c", count: 32), previous = String(repeating: "p", count: 40)
        let variable = "TELEMETRY_SESSION_TOKEN_SECRET"
        #expect(try ServiceEnvironment([:]).tokenSecrets(variable) == nil)
        #expect(try ServiceEnvironment([variable: current]).tokenSecrets(variable) == [current])
        #expect(try ServiceEnvironment([variable: current, variable + "_PREVIOUS": previous]).tokenSecrets(variable) == [current, previous])
        for (variables, named) in [
            ([variable: "hunter2-short"], "\(variable) is 13 bytes"),
            ([variable: current, variable + "_PREVIOUS": "hunter2-short"], "\(variable)_PREVIOUS is 13 bytes"),
            ([variable + "_PREVIOUS": previous], "\(variable)_PREVIOUS is set without \(variable)"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try ServiceEnvironment(variables).tokenSecrets(variable) }
            #expect(error?.description.contains(named) == true, "\(String(describing: error))")
            #expect(error?.description.contains("hunter2") == false && error?.description.contains(previous) == false)
        }
    }

    @Test("METRICS_TOKEN: unset is loopback only in development and test and off in staging and production; a short or spaced one refused without its value; the description never shows it")
    func metricsToken() throws {
        #expect(try ServiceEnvironment([:]).metricsAccess() == .loopback)
        #expect(try ServiceEnvironment(["APP_ENV": "test"]).metricsAccess() == .loopback)
        #expect(try ServiceEnvironment(["APP_ENV": "staging"]).metricsAccess() == .disabled, "staging and production need the token")
        #expect(try ServiceEnvironment(["APP_ENV": "production"]).metricsAccess() == .disabled)
        let token = String(repeating: "m", count: 40)
        let access = try ServiceEnvironment(["METRICS_TOKEN": token]).edgeOptions().metricsAccess
        #expect(access == .bearer(token))
        #expect(!"\(access)".contains(token))
        for bad in ["hunter2", "hunter2 " + token] {
            let error = #expect(throws: ConfigurationError.self) { try ServiceEnvironment(["METRICS_TOKEN": bad]).metricsAccess() }
            #expect(error?.description.contains("METRICS_TOKEN") == true && error?.description.contains("hunter2") == false)
        }
    }

    @Test("AWS: region, static keys or the container endpoint, endpoint overrides; half a key pair or a bad URL refused by name")
    func aws() throws {
        let base = ["AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "hunter2-secret",
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:5001"]
        let aws = try ServiceEnvironment(base).aws(for: "the test")
        #expect(aws.region == "eu-west-1")
        #expect(aws.credentials == .static(AWSCredentials(accessKeyID: "AKIAEXAMPLE", secretAccessKey: "hunter2-secret")))
        #expect(aws.endpoint(for: .kms)?.port == 5001 && aws.endpoint(for: .secretsManager)?.port == 5000)
        func printed(_ value: Any) -> String {
            var dumped = ""
            dump(value, to: &dumped)
            return "\(value) \(String(reflecting: value)) \(dumped)"
        }
        #expect(!printed(aws).contains("hunter2"), "neither description nor dump prints the secret key")
        let tokened = try ServiceEnvironment([
            "AWS_REGION": "eu-central-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "https://creds.example/v1", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "hunter2-token",
            "AWS_ENDPOINT_URL": "https://user:hunter2-pw@vpce.example",
        ]).aws(for: "the test")
        #expect(!printed(tokened).contains("hunter2") && printed(tokened).contains("vpce.example"), "\(tokened)")
        let task = try ServiceEnvironment(["AWS_REGION": "eu-central-1", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"]).aws(for: "the test")
        #expect(task.credentials == .container(AWSContainerCredentials(relativeURI: "/v2/credentials/abc")))
        let pod = try ServiceEnvironment([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/token",
        ]).awsCredentials()
        #expect(pod == .container(try AWSContainerCredentials(fullURI: "http://169.254.170.23/v1/credentials", authorization: .tokenFile(path: "/var/run/token"))))
        #expect(try ServiceEnvironment([:]).awsCredentials() == nil)
        for (change, key) in [
            (["AWS_SECRET_ACCESS_KEY": ""], "AWS_ACCESS_KEY_ID"), (["AWS_DEFAULT_REGION": ""], "AWS_REGION"),
            (["AWS_ENDPOINT_URL_KMS": "hunter2://x"], "AWS_ENDPOINT_URL_KMS"),
            (["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://hunter2.example/creds"], "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            (["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""], "credentials"),
        ] {
            let error = #expect(throws: ConfigurationError.self, "\(key)") { try ServiceEnvironment(base.merging(change) { $1 }).aws(for: "the test") }
            #expect(error?.description.contains(key) == true && error?.description.contains("hunter2") == false, "\(key)")
        }
    }

    @Test("keyring: which variable wins, the AWS sources take the AWS configuration, nothing set is nil")
    func keyring() throws {
        #expect(try ServiceEnvironment([:]).keyring() == nil)
        let aws = ["AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"]
        let all = aws.merging(["ENCRYPTION_KEYS": "{}", "ENCRYPTION_KEYS_FILE": "/k.json", "ENCRYPTION_KEYS_KMS": "{\"kms\":1}", "ENCRYPTION_KEYS_SECRET_ID": "restartix/prod/encryption",
                               "BACKUP_ENCRYPTION_KEY": "b64"]) { $1 }
        let configured = try ServiceEnvironment(all).aws(for: "the test")
        #expect(try ServiceEnvironment(all).keyring()?.source == .secretsManager(secretID: "restartix/prod/encryption", aws: configured))
        #expect(try ServiceEnvironment(all).keyring()?.backupKey == "b64")
        #expect(try ServiceEnvironment(all.filter { $0.key != "ENCRYPTION_KEYS_SECRET_ID" }).keyring()?.source == .file(path: "/k.json"))
        #expect(try ServiceEnvironment(all.filter { !["ENCRYPTION_KEYS_SECRET_ID", "ENCRYPTION_KEYS_FILE"].contains($0.key) }).keyring()?.source
            == .kms(.document("{\"kms\":1}", name: "ENCRYPTION_KEYS_KMS"), aws: configured))
        #expect(try ServiceEnvironment(["ENCRYPTION_KEYS": "{\"doc\":1}"]).keyring()?.source == .document("{\"doc\":1}"))
        let secretKeyring = try #require(try ServiceEnvironment(["ENCRYPTION_KEYS": "{\"hunter2\":1}", "BACKUP_ENCRYPTION_KEY": "hunter2-backup"]).keyring())
        for value in [secretKeyring as Any, secretKeyring.source] {
            var dumped = ""
            dump(value, to: &dumped)
            #expect(!"\(value) \(String(reflecting: value)) \(dumped)".contains("hunter2"), "neither description nor dump prints the document or the backup key")
        }
        let noAWS = #expect(throws: ConfigurationError.self) { try ServiceEnvironment(["ENCRYPTION_KEYS_SECRET_ID": "s"]).keyring() }
        #expect(noAWS?.description.contains("AWS_REGION") == true)
    }

    @Test("provider seeds: one per set gate, empty gates skip, temporary AWS keys never stored, half a key pair refused without its value")
    func providerSeeds() throws {
        let environment = [
            "SES_FROM_ADDRESS": "care@clinic.example", "SES_CONFIGURATION_SET": "", "AWS_BUCKET_NAME": "restartix-files",
            "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:55000", "AWS_S3_USE_PATH_STYLE": "1", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
            "CLERK_SECRET_KEY": "sk_test_bootstrap\n", "DAILY_API_KEY": "", "AWS_REGION": "eu-west-1",
        ]
        let seeds = try ServiceEnvironment(environment).providerSeeds()
        #expect(seeds.map(\.capability) == [.email, .objectstore, .auth], "empty gates skip")
        #expect(seeds[0].config == ["from_address": "care@clinic.example", "region": "eu-west-1"] && seeds[0].secrets.values.isEmpty)
        #expect(seeds[1].config == ["bucket": "restartix-files", "endpoint_url": "http://127.0.0.1:55000", "use_path_style": "true", "region": "eu-west-1"])
        #expect(seeds[2].secrets["secret_key"] == "sk_test_bootstrap", "trimmed")
        #expect(try ServiceEnvironment(["AWS_BUCKET_NAME": "b"]).providerSeeds().first?.config["region"] == "eu-central-1")
        #expect(try ServiceEnvironment(["AWS_BUCKET_NAME": "b", "AWS_ACCESS_KEY_ID": "ASIATEMP", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"])
            .providerSeeds().first?.secrets.values.isEmpty == true, "temporary keys expire: never stored")
        #expect(try ServiceEnvironment(["CLERK_SECRET_KEY": "sk", "AWS_ACCESS_KEY_ID": "AKIAONLY"]).providerSeeds().count == 1, "AWS keys read only when AWS is seeded")
        for (name, value) in [("AWS_ACCESS_KEY_ID", "AKIAONLY"), ("AWS_S3_USE_PATH_STYLE", "maybe"), ("AWS_S3_ENDPOINT_URL", "ftp://x")] {
            var bad = environment
            bad[name] = value
            let error = #expect(throws: (any Error).self, "\(name)") { try ServiceEnvironment(bad).providerSeeds() }
            #expect(!"\(error.map { "\($0)" } ?? "")".contains(value) || value == "maybe", "\(name)")
        }
    }

    @Test("JSON log lines: one object a line, fixed fields, metadata as an object")
    func jsonLines() throws {
        let buffer = JSONLogHandler.LineBuffer()
        var logger = Logger(label: "restartix.test") { JSONLogHandler(label: $0, sink: .memory(buffer), metadataProvider: nil) }
        logger.logLevel = .info
        logger[metadataKey: "request_id"] = "req-1"
        logger.info("served", metadata: ["status": "200", "route": "/v1/me", "ids": .array(["a", "b"]), "nested": ["k": "v"]])
        logger.debug("below the level")
        logger.warning("line\nbreak \"quoted\"")
        #expect(buffer.lines.count == 2)
        let first = try #require(JSONSerialization.jsonObject(with: Data(buffer.lines[0].utf8)) as? [String: Any])
        #expect(first["level"] as? String == "info")
        #expect(first["label"] as? String == "restartix.test")
        #expect(first["message"] as? String == "served")
        #expect((first["timestamp"] as? String)?.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z/) != nil, "\(first)")
        // The same instant as ISO 8601 with milliseconds says it, to the millisecond.
        let instant = Date(timeIntervalSince1970: 1_764_920_400.987_6)
        #expect(JSONLogHandler.timestamp(instant) == "2025-12-05T07:40:00.987Z")
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        let metadata = try #require(first["metadata"] as? [String: Any])
        #expect(metadata["request_id"] as? String == "req-1" && metadata["status"] as? String == "200")
        #expect(metadata["ids"] as? [String] == ["a", "b"])
        #expect((metadata["nested"] as? [String: String])?["k"] == "v")
        #expect(!buffer.lines[1].contains("\n"), "a message with a line break stays one line")
        let second = try #require(JSONSerialization.jsonObject(with: Data(buffer.lines[1].utf8)) as? [String: Any])
        #expect(second["message"] as? String == "line\nbreak \"quoted\"")
    }

    @Test("JSON log lines survive every control character, quotes, backslashes and non-ASCII text, keys sorted")
    func jsonLineEscaping() throws {
        var awkward = (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }
        awkward += ["\"", "\\", "/", "\u{7F}", "é", "🩺", "\u{2028}", "\u{200B}", "a\"b\\c\nd", "</script>", ""]
        let buffer = JSONLogHandler.LineBuffer()
        var logger = Logger(label: "restartix.\"label\"") { JSONLogHandler(label: $0, sink: .memory(buffer), metadataProvider: nil) }
        logger.logLevel = .trace
        for text in awkward {
            logger.info("\(text)", metadata: ["value": "\(text)", "\(text)key": "k", "list": [.string(text), ["inner": .string(text)]]])
        }
        #expect(buffer.lines.count == awkward.count)
        for (text, line) in zip(awkward, buffer.lines) {
            #expect(!line.contains("\n") && !line.utf8.contains { $0 < 0x20 }, "one line, no raw control character: \(line)")
            let object = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(object["message"] as? String == text && object["label"] as? String == "restartix.\"label\"")
            let metadata = try #require(object["metadata"] as? [String: Any])
            #expect(metadata["value"] as? String == text && metadata["\(text)key"] as? String == "k", "\(line)")
            let list = try #require(metadata["list"] as? [Any])
            #expect(list.first as? String == text && (list.last as? [String: String])?["inner"] == text)
        }
        // Fixed field order and sorted metadata keys: the same event is the same bytes.
        let first = try #require(buffer.lines.first)
        #expect(first.hasPrefix(#"{"label":"restartix.\"label\"","level":"info","message":"\u0000","metadata":{"\u0000key":"k","list":["\u0000",{"inner":"\u0000"}],"value":"\u0000"},"source":"#), "\(first)")
        #expect(buffer.lines[9].contains(#""message":"\t""#) && buffer.lines[10].contains(#""message":"\n""#) && buffer.lines[31].contains(#""message":"\u001f""#))
        #expect(buffer.lines[34].contains(#""message":"/""#), "slashes as they are")
        // A year past 9999 keeps every digit.
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 253_402_300_800)) == "10000-01-01T00:00:00.000Z")
    }
}
