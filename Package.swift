// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "restartix-kit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RestartixCore", targets: ["RestartixCore"]),
        .library(name: "RestartixKit", targets: ["RestartixKit"]),
        .library(name: "RestartixRedis", targets: ["RestartixRedis"]),
        .library(name: "RestartixAWS", targets: ["RestartixAWS"]),
        .library(name: "RestartixTenancy", targets: ["RestartixTenancy"]),
        .library(name: "RestartixCrypto", targets: ["RestartixCrypto"]),
        .library(name: "RestartixProviders", targets: ["RestartixProviders"]),
        .library(name: "RestartixTelemetry", targets: ["RestartixTelemetry"]),
        .library(name: "RestartixTelemetryIngest", targets: ["RestartixTelemetryIngest"]),
        .library(name: "RestartixPlatform", targets: ["RestartixPlatform"]),
        .library(name: "RestartixBackup", targets: ["RestartixBackup"]),
        .executable(name: "restartix-core-api", targets: ["CoreAPI"]),
        .executable(name: "restartix-telemetry-api", targets: ["TelemetryAPI"]),
        .executable(name: "restartix-jobs", targets: ["Jobs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // System libraries (Debian: libpq-dev, libsqlite3-dev, libhiredis-dev).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .systemLibrary(
            name: "CSQLite3",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]
        ),
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"]), .brew(["hiredis"])]
        ),

        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
        ),

        // OS headers Glibc does not export (epoll).
        .systemLibrary(name: "CSystemShims"),

        // Libraries. The graph (Documentation/Architecture.md, checked by Scripts/check-architecture):
        // RestartixCore (the error protocol; no dependencies) under everything, RestartixKit over it; Redis, AWS, Tenancy, Crypto and Telemetry beside each
        // other over it (Telemetry over nothing of ours); Providers over Tenancy, Crypto and AWS;
        // Platform, the platform's own domain, over all of them; the shells over Platform.
        .target(name: "RestartixCore"),
        .target(
            name: "RestartixKit",
            dependencies: [
                "RestartixCore",
                "CLibPQ",
                "CSQLite3",
                "CSystemShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RestartixRedis",
            dependencies: [
                "RestartixKit",
                "CHiredis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "RestartixAWS",
            dependencies: [
                "RestartixKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "RestartixTenancy",
            dependencies: [
                "RestartixKit",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RestartixCrypto",
            dependencies: [
                "CLibCrypto",
                "RestartixKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Encrypted archives in an object store, and the Postgres dump and restore on them.
        .target(
            name: "RestartixBackup",
            dependencies: [
                "RestartixCore",
                "RestartixKit",
                "RestartixCrypto",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "RestartixProviders",
            dependencies: [
                "RestartixKit",
                "RestartixRedis",
                "RestartixAWS",
                "RestartixCrypto",
                "RestartixTenancy",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RestartixTelemetry",
            dependencies: [
                "RestartixCore",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The Telemetry API's engine: sessions, spool, finish through the kernels, delivery to
        // the Core API. Over Kit (object stores), Crypto (tokens) and Telemetry; nothing that
        // touches Postgres.
        .target(
            name: "RestartixTelemetryIngest",
            dependencies: [
                "RestartixCore",
                "RestartixKit",
                "RestartixCrypto",
                "RestartixTelemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        .target(
            name: "RestartixPlatform",
            dependencies: [
                "RestartixKit",
                "RestartixRedis",
                "RestartixAWS",
                "RestartixTenancy",
                "RestartixCrypto",
                "RestartixProviders",
                "RestartixTelemetry",
                "RestartixBackup",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Shells, and what they share: the configuration layer (swift-configuration) and the
        // logging bootstrap. Not a product: wiring, not library API.
        .target(
            name: "ServiceSupport",
            dependencies: [
                "RestartixKit",
                "RestartixAWS",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shells/Support"
        ),
        // What the executables that serve the platform's data read besides: the keyring and
        // the provider seeds (the Telemetry API links neither).
        .target(
            name: "PlatformSupport",
            dependencies: ["ServiceSupport", "RestartixKit", "RestartixAWS", "RestartixCrypto", "RestartixPlatform", "RestartixProviders"],
            path: "Sources/Shells/PlatformSupport"
        ),
        .executableTarget(
            name: "CoreAPI",
            dependencies: [
                "ServiceSupport",
                "PlatformSupport",
                .product(name: "Prometheus", package: "swift-prometheus"),
                "RestartixKit",
                "RestartixPlatform",
                "RestartixRedis",
                "RestartixTenancy",
                "RestartixCrypto",
                "RestartixProviders",
                "RestartixAWS",
                "RestartixTelemetry",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shells/CoreAPI"
        ),
        .executableTarget(
            name: "TelemetryAPI",
            dependencies: [
                "ServiceSupport",
                .product(name: "Prometheus", package: "swift-prometheus"),
                "RestartixCore",
                "RestartixKit",
                "RestartixAWS",
                "RestartixCrypto",
                "RestartixTelemetry",
                "RestartixTelemetryIngest",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shells/TelemetryAPI"
        ),
        .executableTarget(
            name: "Jobs",
            dependencies: [
                "ServiceSupport",
                "PlatformSupport",
                "RestartixKit",
                "RestartixPlatform",
                "RestartixTenancy",
                "RestartixCrypto",
                "RestartixProviders",
                "RestartixBackup",
                "RestartixAWS",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Shells/Jobs"
        ),

        // Examples: programs an integrator would copy; built with the package so they never rot.
        .executableTarget(
            name: "StorageQuickstart",
            dependencies: ["RestartixKit", .product(name: "Logging", package: "swift-log")],
            path: "Examples/StorageQuickstart"
        ),
        .executableTarget(
            name: "TenantQuickstart",
            dependencies: ["RestartixKit", "RestartixTenancy", .product(name: "Logging", package: "swift-log")],
            path: "Examples/TenantQuickstart",
            exclude: ["README.md"]
        ),
        // The documentation's code: every ```swift block of README.md and Documentation/,
        // generated into Examples/DocSnippets/Generated by Scripts/doc-snippets and run by CI.
        .executableTarget(
            name: "DocSnippets",
            dependencies: [
                "RestartixCore", "RestartixKit", "RestartixRedis", "RestartixAWS", "RestartixTenancy", "RestartixCrypto", "RestartixProviders",
                "RestartixTelemetry", "RestartixTelemetryIngest", "RestartixPlatform", "RestartixBackup", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/DocSnippets"
        ),
        .executableTarget(
            name: "TelemetrySession",
            dependencies: [
                "RestartixTelemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Examples/TelemetrySession"
        ),
        .executableTarget(
            name: "RedisQuickstart",
            dependencies: ["RestartixKit", "RestartixRedis", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Examples/RedisQuickstart"
        ),

        // Tests, and what every test target shares (the one required-service rule, temporary
        // directories): Tests/Support.
        .target(
            name: "RestartixTestSupport",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/Support"
        ),
        .testTarget(
            name: "RestartixKitTests",
            dependencies: [
                "RestartixTestSupport", "RestartixKit",
                "RestartixRedis",
                "RestartixAWS",
                "RestartixPlatform",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RestartixTenancyTests",
            dependencies: [
                "RestartixTestSupport", "RestartixTenancy", "RestartixBackup", "RestartixAWS",
                "RestartixKit",
                "RestartixPlatform",
                "RestartixCrypto",
                "RestartixRedis",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RestartixCryptoTests",
            dependencies: [
                "RestartixTestSupport", "RestartixCrypto",
                "RestartixKit",
                "RestartixTenancy",
                "RestartixAWS",
                "RestartixPlatform",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "RestartixTelemetryTests", dependencies: ["RestartixTelemetry", "RestartixTestSupport"]),
        .testTarget(
            name: "RestartixBackupTests",
            dependencies: [
                "RestartixTestSupport", "RestartixBackup", "RestartixKit", "RestartixCrypto", "RestartixAWS", "RestartixPlatform",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RestartixProvidersTests",
            dependencies: [
                "RestartixTestSupport", "RestartixProviders", "RestartixKit", "RestartixCrypto", "RestartixTenancy", "RestartixAWS", "RestartixPlatform", "RestartixRedis",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "CoreAPITests",
            dependencies: [
                "RestartixTestSupport", "CoreAPI",
                "ServiceSupport",
                "PlatformSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Crypto", package: "swift-crypto"),
                "RestartixKit",
                "RestartixPlatform",
                "RestartixRedis",
                "RestartixAWS",
                "RestartixTelemetry",
                "RestartixProviders",
                "RestartixTenancy",
                "RestartixCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TelemetryAPITests",
            dependencies: [
                "TelemetryAPI", "ServiceSupport", "RestartixTestSupport", "RestartixKit", "RestartixCrypto", "RestartixTelemetry",
                "RestartixTelemetryIngest", "RestartixAWS",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "JobsTests",
            dependencies: [
                "RestartixTestSupport", "Jobs", "ServiceSupport", "RestartixKit", "RestartixCrypto", "RestartixTenancy", "RestartixProviders",
                "RestartixBackup", "RestartixAWS",
                "RestartixPlatform", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
    ]
)

// Benchmarks stay out of the consumers' graph (as Hummingbird's do): they exist only when
// RESTARTIX_BENCHMARKS is set, e.g. `RESTARTIX_BENCHMARKS=1 swift run -c release storage-benchmark`.
if Context.environment["RESTARTIX_BENCHMARKS"] != nil {
    package.products.append(.executable(name: "storage-benchmark", targets: ["StorageBenchmark"]))
    package.products.append(.executable(name: "tenancy-benchmark", targets: ["TenancyBenchmark"]))
    package.products.append(.executable(name: "crypto-benchmark", targets: ["CryptoBenchmark"]))
    package.products.append(.executable(name: "redis-services-benchmark", targets: ["RedisBenchmark"]))
    package.products.append(.executable(name: "telemetry-benchmark", targets: ["TelemetryBenchmark"]))
    package.products.append(.executable(name: "telemetry-ingest-benchmark", targets: ["TelemetryIngestBenchmark"]))
    package.products.append(.executable(name: "providers-benchmark", targets: ["ProvidersBenchmark"]))
    package.products.append(.executable(name: "bare-hummingbird", targets: ["BareHummingbird"]))
    package.products.append(.executable(name: "patient-read-benchmark", targets: ["PatientReadBenchmark"]))
    package.products.append(.executable(name: "booking-benchmark", targets: ["BookingBenchmark"]))
    package.targets.append(contentsOf: [
        .target(name: "BenchmarkSupport", path: "Benchmarks/BenchmarkSupport"),
        .executableTarget(
            name: "StorageBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixKit", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/StorageBenchmark"
        ),
        .executableTarget(
            name: "TenancyBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixKit", "RestartixTenancy", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/TenancyBenchmark"
        ),
        .executableTarget(
            name: "CryptoBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixCrypto", .product(name: "Crypto", package: "swift-crypto")],
            path: "Benchmarks/CryptoBenchmark"
        ),
        .target(name: "MallocCounter", path: "Benchmarks/MallocCounter"),
        .executableTarget(
            name: "ProvidersBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixProviders", "RestartixCrypto", "RestartixKit", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ProvidersBenchmark"
        ),
        .executableTarget(
            name: "TelemetryBenchmark",
            dependencies: ["BenchmarkSupport", "MallocCounter", "RestartixTelemetry"],
            path: "Benchmarks/TelemetryBenchmark"
        ),
        .executableTarget(
            name: "TelemetryIngestBenchmark",
            dependencies: [
                "BenchmarkSupport", "RestartixTelemetry", "RestartixCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/TelemetryIngestBenchmark"
        ),
        .executableTarget(
            name: "PatientReadBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixKit", "RestartixCrypto", "RestartixTenancy", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/PatientReadBenchmark"
        ),
        .executableTarget(
            name: "BookingBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixKit", "RestartixCrypto", "RestartixTenancy", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/BookingBenchmark"
        ),
        .executableTarget(
            name: "BareHummingbird",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")],
            path: "Benchmarks/BareHummingbird"
        ),
        .executableTarget(
            name: "RedisBenchmark",
            dependencies: ["BenchmarkSupport", "RestartixKit", "RestartixRedis", "RestartixPlatform", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/RedisBenchmark"
        ),
    ])
}

for target in package.targets where [.executable, .test, .regular].contains(target.type) {
    var settings = target.swiftSettings ?? []
    // Require `any` for existential types (SE-0335).
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    // Imports are visible only where they are written (SE-0444).
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    // `public import` only for modules whose types appear in public API (SE-0409).
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    // Nonisolated async functions run on the caller's executor (SE-0461), so closures passed to
    // `transaction { }` from actor-isolated code need not be Sendable.
    settings.append(.enableUpcomingFeature("NonisolatedNonsendingByDefault"))
    target.swiftSettings = settings
}
