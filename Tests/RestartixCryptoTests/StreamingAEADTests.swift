import Crypto
import Foundation
@testable import RestartixCrypto
import RestartixKit
import Testing

/// The streaming AEAD against ciphertexts Tink made (both directions, byte for byte), then the
/// attacks the backup format must survive: each refused with its own code, never garbage.
@Suite("Streaming AEAD (Tink AES-GCM-HKDF)")
struct StreamingAEADTests {
    /// Made by Tink 1.16.1 (Python), `AesGcmHkdfStreamingKey` with HKDF-SHA256 and 32-byte derived keys,
    /// plaintext byte i = i % 251, written to Tink in uneven pieces; Tink opened each before it was kept.
    static let tinkKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f404142434445464748494a4b4c4d4e4f"
    static let tinkVectors: [(segmentSize: Int, plaintextSize: Int, associatedData: String, ciphertext: String)] = [
        (256, 0, "", """
            2894b84ca95db754aebb45de8c5e66e0fc46b4993208e02cf696432c7d5ba4557882bb4bdf5953da0e8613929d04f1fe
            60b5e95a3fd8d1c7
            """),
        (256, 20, "aad", """
            28bde35978c2475ae3f33a907d1c4b912b0095ea6eb61ec5ba9a1cc673e7784189520037b16d8bbb328708fecbe5b281
            66d2f095f26beb747b95d2a3f065b8a111f25bb9ed588e634e2e42d1
            """),
        (256, 200, "", """
            283c737a8f31bf7b4aa0399460e30ea1ec25487ae488e412c57650accc068b463948225ecb51dcc57867a0563a7c3de8
            0f11bb17234c351804fa6e853e350a4f854dc6805c5f6c82a8a1dfc4a62f6888a37b4dbb40fb10d9cd68b802d993a003
            23637aaeb66cdf7b9c7d3542bf37239e65b419ecc71182056afc9c325dbe296fae06a7512cf46fe751d8b167d94482b8
            b4b8fc5e4fa972d7d22ba7a0d7dedae385b6567de61b8c07000a09296e71001a0055d30119aa5ac94002b10518e851d2
            bea45b4c8bb119345fa18107c856ff1555dd209c4f9a483fb7e03eeb119af40f47e435b713ce52f72d107dff1a6e97c8
            fab25dceb0cee69a18907a6c8d827546
            """),
        (256, 201, "restartix backup", """
            28e895531916db00a62fe912c5b70ee248f39e3457054ea005e34aa80e9b8e03c09ec95cbd7bb2ac97bf29c870158712
            5bd7735e7fbd1924f7fac7702d1ca458e85f1be6ff3f9ca5957129f5a81f3a487823ca9952d888eff2c3f37d9bd518f7
            d8e68573c5b2c76f82c9324b2408d6bd2e53fe69401d639f48147009c6c67ec26d7768ee70182962cf42cebd579c7186
            861fc26eaef07b5e6de487b1054962fb14f46380b357b1e2553b09874ef9a9db46c7934dcce6ae3c97a6d105189206bd
            ec8474687ee12156dddeeaeaee84f78c01d506fa4602231982fcd4057f45feb0febcf3516488ab855758d78a73f5696f
            4d522c4a1bc3bd4abf9dcda1333f2871efeef81bbf738a7383ba5e181fe582fc15
            """),
        (256, 1000, "xxxxxxx", """
            2844555b523f41eaa0c5711cd28e74b760db7caab8d3f3a4919322088a62af16e424b028e3b0343c08ca8255e7608524
            1ecc155a4350b2ea343933a31837e5b5462de5def2547a97c0cfd01243093b3ebca887720c286190c2f0b1d8f6a838cf
            f92e900d926978c8ae6cef188e6fbd11be36ffef85f8e3bdd1af07fc7af7dc6300f8a74d2e3e8618081c73a9f31a0d21
            38de0e06a3132e76819290b9c74b22f184068e917852e685b6b3806dfe7e31faaaef753dc92eabe96a8adf1e6ebea6bf
            82810fe61d1a286f0a14dda84e874f6cf5a7502127accebbe9f28f009864a7e7f01e8c9cce68579735f6ebdf2d72b6c8
            a305d09b4bb2cd8af3b4b81d37b148e239c36f63750398c433b9b1e17674570a3337d8321e0f94d40483f8b9a5566e3c
            42656c4e1063619d72b3ad6d42cf7495165dd9845fc9998d0396923f1d96c2dc3e53955b1190a792c1297f020fdd4198
            2f103968e02a9129b7d76502b6c54fea882fb07bc1fdca3158a19b31278e69b1fbbe95faa1c730344bb8bf4df70c3cce
            98b1c1436f5c91710b9fa0f9401771b7f1a17913662e9de721e4f0599e1ef4c396acf4a8c9a0fbeff66a36333155dfa4
            9e0eeafadbddf34d86138cf6eb030540ea7b29f34cf55f94fd8c46b4b5f9901bf31e4229ab01fb78b73ae615798e84b5
            14b975577d8bf93720dc8d43cb69dc9fd4e950ac3dbf1e2113b341fb8d8b51818ef771f0d40904c6699d407c42f74058
            7d941743bc05148a7b42479ecba2b83dd737cfea76eda421be3a16345a3d357c4496148b77023e47bd4ba28f5189aba3
            2592ef022d0bd3052e0fdf7624e1b3038e81d9275ac51682a5ef7df48a00982a0487012577fd73683f7a73ba32ca7b74
            169912d073eea64e20d64fb41acd23317fdd5da71a45db17a0bd0cd9ec6e0a8649048f0d53d4080438f88ad138987b0c
            a5ec1774d2a8bd509237444ba6349afd0a2b7e3e977509211710a8ace52f026d6fe40ffc2d9e3c022820078ee0515b06
            425eb47af2e730bda9c5069af7cb1fd8066339705b2db732741f53dcb4330c30b98f42ecb1ff14d83cd58fbdb3d13358
            d79a8033e6fb60bda243e4d1b74b42e016a4e76d04f000ad52ffa41644ca4a430f9edaf3929ab410a005b6b68faddafe
            27d9825a500545ac881b257a734b09883b43cec304cf62c5b5e43c204f1e39390aac54dd1dc99b2f18c371e5f6d1380c
            9affcecbe0ac2d3c3b39e9246c07ed04899255f39d376912e259657a6f6e8ca55c4ef3f5cccc6af774cd59103c4f1b2f
            2bde0311fb9d383e8eb01df86dc3963e32a13380cefb8dec2527a2e74fb0142c098a3728253cbbb39c1c68bd874c66f3
            ec52852a40b89f92868d4308501c440dcd144434c161f5308b24f59c5f16d124a8345a461ba6d46c049afb9cc8e3f45c
            5fa32a6a67e8047f7db5f9e59f70f3415b9f31d22cc545e110d08b6b827fdf9533b79cf8c8b19eb8f0cc4b3f3dd91f76
            892b18b5217707d81bcf32ac08bd41c943d0c8adb12590bce0710e35b8cf7e89a81124786707275631fcf8c8993984c8
            1bcc3403b8f5737eca496db765b4e036
            """),
        (256, 440, "", """
            28e964dc4200ab93cac4bbd9e5a925d8e8f6423b0581655e153117ed79b5445ef67df23d683880d61a8fe439443185af
            a87da987bb615a967680fa824267714226a0440556da788026b5ab0cce42a2a5a30588c3edfe4dbc3495fd2cfb4ad6bf
            ac6ddfe718e936034d5cfbe4d95f492ca90b600497fef0824f22bb4a212635ca145f0b699b90f22c60722cb8dfce2b34
            4082fc43d6007a7e62b14837eabb9c532cc713f7a78819a6db164108214940ad258cf2bee1c12e5f71c09b42e5c7f4e3
            1635de765faa53c665811875113f21a653d3c22ba97a9536e8218835c0ef1a17ff1291199bcda70cfb24302f9e6c99b2
            1ba3181f4f456e28d0a519ff983e1f9d73df82658c151a6b32068bb9b607fc74d56f9159767d40d791f7c26d3682e1ee
            d39bcd560d59cfdfb8b508af44f29494c2fabef4205aeccbe47cda9fa4ee54bc27f7529763c816d0b1c73397b93ee240
            40c1862f4f323acb755281c379b90abeacf865a1d988e7bfa6c6ba90e0ed1c892d3c7569b35177fb7d80e37bbbcd5e31
            0518bf650d4c6970e56c55f20838e19cfea4f7efd1920b7af97e32fc80172a1567e608b545bb787ff4861f6c8d28b189
            8242ff4800751a4c74e2dc2d635d4e4a68b20837f81f2e25908250d07009e9a6a364e158f6513565e157e0511784034f
            5d4e59c645063f87af7a60dd9435356c3335e7dd7984af8e298c74e70d449d62
            """),
        (1024, 3000, "manifest", """
            28fc5159a213c6c787732789f83fff4d069730c8042f5c3ef423df96af5351f2f4ac72e364ac87fca948f551d19033d6
            60a5ebcc4b4af3da1fc375d7b7824c16b9a2c4571ee502bca127c3ddba4c50f06a7dd8a94db7a6fa6c676490a917e7ba
            0b365bcbe2a11c42de08411c769bc77c98c1f1feeda59b5aae24e339e830fab688afb6c1301d279114dd9bd1107d86fd
            9906c084b00d94e5baebbee8cc4742d26b517e1eec38607e0b1a76d976748ac99cf0a8ab3e38a01327c5102b2330d9c4
            b512d846058175b24f2824bc282c7fbeab9a552e676e0b5c37110497708e06e0083a0247cacd53d6d734ac2a68368d60
            50f6c6f8bbe55b9ffa4033833c26d05af717dcb4e08420fab0b52eeac4da35939d14ddfb343f0f365fd0aeb11e516ab1
            e09c6d089fb6890751cc58ba433f20bff272d07dd67d04fd5e73ccec2f3fcab634f66b835fa937cfaaaa9ea2a686f31a
            b5126117b7c1d3ee0318f1e5ffaedb84b96c020ca9685d00e09fc55563b6859788b936415d12f98515ceb00345a335fc
            0df7f2b2f92f45f339a0d6e905e154fc72fb014a6fb7fe5dc825506268c1fba664fafee7592c51f5b0f4a2ac8f804226
            ecc778094975f8924b2052f388b0f1ba9ac2b4742b866d0ee031a0205dd163b30a814ce776b285a63e96aecb11b29299
            ad6f1bcc9d0813259fdc5cab2126b673ad035b7602c8077c8edf46dd6be06e48c932a60be9f4ae6e0df1352309e4a884
            bb2d2882f3743fb5a2a32a2df679d0a89ee6f381cca80ecc8b371cf73bc9889388679caefc745ba9dc18517d91034e1e
            f1fcab70089230f93149c88e21b08f74b95fea606e68d9b691014c571a99b81aa66879581de1abb896fa0e73e082409c
            d4490ff361336d505f0442be3a96f990350e36ce9db062b5b57b53134535e6309ea5c28d451ce46b8aa4d07978427868
            215a7f99f4910e32430b1980c22e24f9ee0fc42a5788970283e9f36b05f6b5bc2dc54653ef822d28ab58e9c0f200c4ca
            6f218839da46b1780300e11c1b5d972af36f53a62ea0bbf5df0e2dfdfa994ec3898d6b8f2a2ac12b6aa0c1ebdd0b0917
            da0602d9b71825ffe07a1886ce18adbf3e9753b3fe20e9d223f7bb99dd57ff53129d8c8f38be61bb3dfdbede2918c83e
            89b38908c5f6bcdb06110493ec4fd287b23dd9eb5154620333bc172bb01b6e021e05be481ebf23b8c2b0798c9d72b250
            eaea02a875ff904524fed27dfba2f675113c6b101428edecf93f984a23795490d9cdc55a6252723f75a21626a7b805fa
            0ed3ab86a343702b24b2700e79c06e0e85e55670135ec0e7c442615b216d59d2276a45e647a57072237739d7c6d6ea27
            ede6daebd3e67ea53eb09eae3530a6fd72af4e09a48f7db7a0d1422ecfced780708a88b6dae2406f709bb2e38dd347c5
            655250afddeb41a6a9e72bfb51f56c707a9a2328994d9028cf80a185438a3fd469f1d0c98e7e9a23636f85e143bbc340
            92331515084c90db3ac998551b086755ecba8fad4d9e8241c75bf965cdf09d923e42c439e72831455374300599847d0b
            07f74308ec0689ae587445639594b54b4e5471d606187b9caa34a7ab5dc526eee69128b0f1db7b3898ab59d2973e12dc
            427e20d02bf8f69c626c652877d3f5534f2f52e2d066a2e5bc48bdc69dd40ecd42a4b62f80eb30196d187faf412126d8
            64c9516072e89c19e497192c52762ac43810d749969408335f2eeff9d2df137fc203a6706e6c07b07c0d292aebf353d0
            b684bed640d9ff0f609a7028e3fa75ec620396175938de0834d4591eae58a3fb00534dc71e392a1d1ac99105139c40b0
            ba86c49fe7fe3b7e8521d5b67a6048945dd697149841636aee024a4171b58242b0c70265770467d318ef482349931a3c
            55f81d7b32af667ce285c95f776c36d0938a4d2a9b289eee4ec7bf87f985fdf6d538d32c0e9a53528f614a134592e7e9
            16b74dd25931628afe8105a0b482bb9e35d2f0a9e7baa071132ba656ea2da9ec63a1f88276f362a97a186177a2cf3ea6
            65c590a04c27f19b536847e5edaa3c6bc5d97439c602676cc6f59b264f44f1b0969ac51f483003a6608b11c960de77e5
            df3e3080950fd62e252cb62fc0bc0ee9f68b34d9fc3adf417e2db8100c4a5fb0abfcf55e44292313f57d7821941939a9
            3f7ec4e209413d9bdc6bdf3ccd16efae1079843ba06d5e7f08f326c74da0efcad52d102b57d36626394d2b04ba3f5ee3
            687e93d23f5786c2487286d0c61eb8841b4843acdaa5429382bce4d3f6440bdaf5a1be8da7903da0ede526af1c80c98c
            e9ffb2173e6c41877a71ea5e3ecb3fb3f2cdebcafc57d25e24ef6ecedc0121f85aecf5773dfff3f5a3c64a6b40c2a3fd
            e59ee1df4fcb2bcc84e018696f2acd14de7f46e58bef0c82a4efcb1376b90036f2c1b8fc27c9257ba7a9769bffbda908
            1006fbe95c523a4da7d1be9108dfcf86abf5eea6f0eb0ee291c565497e6f4e3ed6d67b3d917143670b2fdab8a1705ea1
            e0112b594a2d6fcc76efdd2299261633437a65e828a1d4b78623256bd9fdd9e03004788cc31ab32ff8c16ba7ad69e0e6
            e480fa9e9bec15a065372a8ba450949be2874115a06dfb5d63611b51e980b51cd8489b9d2ef9a39674e65bf2fdd39858
            b5784af273e37da1deb1f7538cd5b5c1229494c77ae053c0f82122cb3e1f3f23bbf121371a28649454eaf8a2dce2dcbd
            37047d7fc768c4abd4aaca9d9aea9155751511f7c101184dcd794e0563d690e8ead4407f9bb3c11ff48cf5f297a28ece
            16fc11389c0b531c2ade34b1131625d57343ac24bf7e55ed845b64c354488ad6083d7fe0428e191b675824520aa8d08f
            efaa184ba03fd18e32fa449a329562ef7ee40b9529a3d6b59dfb01d7f1ddea0f859ace8e167cb2cffdf1e1167c97059a
            9a6cb46fad5de93c17cbedb7fdba3059901853fef10831376862a67cb8b882610423dbbf4d13de6d39967851aaa470ad
            fd567d4487fe98d70e8fb5fca6891ca63eaba746d00d020b2dc90ea35abee77b56944bbf6b6c2be6e879d4d1981e4fb2
            32772a1e78181fb91b517de311aa7164ff3d200a2c58704b5c8d8c0ec18f99c3079388326a7bdf970f1bcc58785355b8
            6f927f7b22e0cde9c34cf1b5940a1dfea5f7ab083d27db4c135373f320cf22ae77ef11510417299d2ef630a46a889409
            0aff6a10d1fbd9719eb39c9ff52684999c1bc53c87f421b4cbf42735f96d6021481925bdc6030c8ebbae8c15a8d67824
            54cbd1ede7f708aa66ab0cd251835c75e1e73a6cdac572fc0a1bcad1f7bffec42c37ad0ea4c76ec377d7951147f381d6
            437e81997d4752a3fb3b4444405ef5ff3c4c36c6b4496b46a9473340dba1d0c2f19cef5a398db031f843fc5467d99d25
            3a1b80e2f8658ba96751ff4261d6d3b4e2281c1c34a828a7b08c624843edb39689c50d882526916c1cd3c2c96535185d
            6a9829866bcd08111c1a0bf75aedac331c884072d724071a830bfe6849d2bd8957c17bf5a581032e40dacce7600c9f03
            c5ef462630d8e06e2504f069e0bf508b43798ffabb6312725a77e7d49b75cb2320c4e07da9d4294c9949b816940e61cc
            43eb2ece29fafda51ece1d4378a0bea625a7f9fef8d708c936bb69a281e7fe05fb60590ef7c0621505484deca847e4a3
            6ab52cd21c8c08e3863e1a0f13e1f1cf32ebe25ff5d2b9faa2bfd1a7d4333e42e345ff95e049a837bb2352d211996e65
            2aca2c49d962a0c9e80b820d44dbce42d0f460f64a49fce4d24377dd6b393f0c5500634992c3297e4f3794311fe6f5f2
            696b37fce21502e62ef7fb5133cd5f19fd243c887f4137c36ed0fa2aa6b14c2e4444b5ecb49524a0b274f9572e94005e
            bfb3aac8c93d7c95c8ca5f640e8807f721be93ef369b2f73c69e08fabcd7b49471d917e8d5693528c8ad34c2b9877aa8
            572f6708b001db41a1de10e9fac58b90927798b253487a8cd18c76e3bd1b6b7b105d3258c0cd6c556d0ed66a56064dfd
            50605df7ff2b704cd631cd2249f76c1a469ff173d005300f6ca4d8b92ec49064175bfed726a9519110ee003a3969d22b
            53c1d570be2defdfa1f1ae3598d7f7269304c9cdedc0ae8a32ebc390eee15831676193ab0717e8df08d97a3d4e189103
            3ebeb20bbb696cd4788845d283f9bdc61e49c51d5bae07119e28a8c842c089efecbe75b88290183cacf986ddd206136f
            32813155b276a58ae0c4f39d1f37d67dd3c0d9126d3d67bb6ba86f66aa855615aa804939b7516bfde7ed5718c8ddc8bd
            cc4df90fa3cfd647ecfa44853b042efab5b87a5da6c487504c3bf99372e0a5834bf21881ac73fa9e6631c7e14a899233
            86bc03c75220e48b60a2ca9203c4d2d4f00b3f93af330c8ef51ea4742d05fb8d
            """),
        (1048576, 100, "", """
            285556894f53f1ee63a6a1fdfe7881053ed8400663615063a7c4dc2802b94724a25dcd0cdf62dff13e8553ce59efddab
            ec95034aa742eba8c9947c45d4b9e8ba5a195cfbf67579f94dff11d2b6bdf6c94d7dfcbe05a9dbc7c551cb186af1d9dd
            a716c66e25242a33ce2fccab8954751cae474b5576088fed7c770606f1c08d232ca857c2800a31322c7e33130aee1640
            9b67a105b500406010ca2bf8
            """),
    ]

    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8.filter { $0 != 0x20 && $0 != 0x0A })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16)! }
    }

    static func plaintext(_ size: Int) -> [UInt8] { (0..<size).map { UInt8($0 % 251) } }

    /// Feeds `input` to `step` in pieces of growing, uneven size and gathers the output.
    static func pieces(_ input: [UInt8], _ step: (ArraySlice<UInt8>) throws -> [UInt8]) rethrows -> [UInt8] {
        var out: [UInt8] = [], offset = 0, size = 1
        while offset < input.count {
            let end = min(input.count, offset + size)
            out += try step(input[offset..<end])
            offset = end
            size = size * 2 + 3
        }
        return out
    }

    static func decrypt(_ aead: StreamingAEAD, _ ciphertext: [UInt8], associatedData: String = "") throws(EncryptionError) -> [UInt8] {
        var decryptor = aead.makeDecryptor(associatedData: Data(associatedData.utf8))
        var out: [UInt8] = []
        do {
            out = try pieces(ciphertext) { try decryptor.update($0) }
        } catch let error as EncryptionError {
            throw error
        } catch {
            Issue.record("unexpected \(error)")
        }
        return out + (try decryptor.finish())
    }

    static func encrypt(_ aead: StreamingAEAD, _ plaintext: [UInt8], associatedData: String = "") throws -> [UInt8] {
        let encryptor = aead.makeEncryptor(associatedData: Data(associatedData.utf8))
        return try pieces(plaintext) { try encryptor.update($0) } + encryptor.finish()
    }

    static let key = SymmetricKey(data: bytes(tinkKey))

    @Test("Tink's ciphertexts open to their plaintexts, and sealing with Tink's salt and nonce prefix gives Tink's bytes")
    func tinkVectors() throws {
        for vector in Self.tinkVectors {
            let aead = try StreamingAEAD(key: Self.key, segmentSize: vector.segmentSize)
            let ciphertext = Self.bytes(vector.ciphertext)
            let plaintext = Self.plaintext(vector.plaintextSize)
            #expect(try Self.decrypt(aead, ciphertext, associatedData: vector.associatedData) == plaintext, "\(vector.segmentSize)/\(vector.plaintextSize)")
            #expect(aead.ciphertextSize(forPlaintextSize: vector.plaintextSize) == ciphertext.count)

            let salt = Array(ciphertext[1...32]), prefix = Array(ciphertext[33..<40])
            let encryptor = StreamEncryptor(aead: aead, associatedData: Data(vector.associatedData.utf8), salt: salt, noncePrefix: prefix)
            let sealed = try Self.pieces(plaintext) { try encryptor.update($0) } + encryptor.finish()
            #expect(sealed == ciphertext, "the same bytes as Tink: \(vector.segmentSize)/\(vector.plaintextSize)")
        }
    }

    @Test("round trips at and around segment boundaries, fed a byte at a time or all at once")
    func roundTrips() throws {
        let aead = try StreamingAEAD(key: SymmetricKey(size: .bits256), segmentSize: 100)
        let first = 100 - StreamingAEAD.headerSize - 16, other = 100 - 16
        for size in [0, 1, first - 1, first, first + 1, first + other, first + other + 1, first + 5 * other, 2000] {
            let plaintext = (0..<size).map { _ in UInt8.random(in: 0...255) }
            let ciphertext = try Self.encrypt(aead, plaintext, associatedData: "ad")
            #expect(ciphertext.count == aead.ciphertextSize(forPlaintextSize: size))
            #expect(try Self.decrypt(aead, ciphertext, associatedData: "ad") == plaintext, "size \(size)")
            var decryptor = aead.makeDecryptor(associatedData: Data("ad".utf8))
            let whole = try decryptor.update(ciphertext) + decryptor.finish()
            #expect(whole == plaintext)
        }
    }

    /// `ciphertext` with its segments cut out: the header, then each segment's bytes.
    static func segments(_ ciphertext: [UInt8], segmentSize: Int) -> (header: [UInt8], segments: [[UInt8]]) {
        let header = Array(ciphertext[..<StreamingAEAD.headerSize])
        var segments: [[UInt8]] = [], offset = StreamingAEAD.headerSize, size = segmentSize - StreamingAEAD.headerSize
        while offset < ciphertext.count {
            let end = min(ciphertext.count, offset + size)
            segments.append(Array(ciphertext[offset..<end]))
            offset = end
            size = segmentSize
        }
        return (header, segments)
    }

    static func code(_ body: () throws(EncryptionError) -> [UInt8]) -> String? {
        do {
            _ = try body()
            return nil
        } catch {
            return error.codeName
        }
    }

    @Test("tampering: each attack refused with its own code, and no plaintext of a bad segment returned")
    func tampering() throws {
        let key = SymmetricKey(size: .bits256)
        let aead = try StreamingAEAD(key: key, segmentSize: 128)
        let plaintext = Self.plaintext(1500)
        let ciphertext = try Self.encrypt(aead, plaintext, associatedData: "backup 1")
        let (header, parts) = Self.segments(ciphertext, segmentSize: 128)
        #expect(parts.count > 6)
        func open(_ bytes: [UInt8], associatedData: String = "backup 1", with other: StreamingAEAD? = nil) -> String? {
            Self.code { () throws(EncryptionError) -> [UInt8] in try Self.decrypt(other ?? aead, bytes, associatedData: associatedData) }
        }
        #expect(open(ciphertext) == nil)

        // A flipped bit anywhere: in the header, in the first, a middle and the last segment.
        for position in [0, 5, 35, StreamingAEAD.headerSize + 3, ciphertext.count / 2, ciphertext.count - 1] {
            var flipped = ciphertext
            flipped[position] ^= 0x10
            let code = open(flipped)
            #expect(code == (position == 0 ? "invalidHeader" : "authenticationFailed"), "bit flipped at \(position)")
        }
        // Dropped segments: one in the middle, two together, the last but one, the final one
        // (then the stream is cut short). The first is shorter than the rest: bytes misalign.
        for dropped in [[3], [3, 4], [parts.count - 2]] {
            var rest = parts
            for index in dropped.reversed() { rest.remove(at: index) }
            #expect(open(header + rest.joined()) == "segmentMissing", "segments \(dropped) dropped")
        }
        #expect(open(header + parts.dropLast().joined()) == "truncated", "the final segment dropped")
        #expect(open(header + parts.dropFirst().joined()) == "authenticationFailed", "the first segment dropped")
        // Two segments swapped, neighbours or not, up to the last but one; a segment repeated.
        for (a, b) in [(2, 3), (1, 4), (3, parts.count - 2), (1, 2)] {
            var swapped = parts
            swapped.swapAt(a, b)
            #expect(open(header + swapped.joined()) == "segmentsReordered", "segments \(a) and \(b) swapped")
        }
        var repeated = parts
        repeated.insert(parts[2], at: 3)
        #expect(open(header + repeated.joined()) == "segmentsReordered", "a segment repeated")
        // Cut short inside a segment, inside the header; extended past the final segment.
        #expect(open(Array(ciphertext.dropLast(5))) == "authenticationFailed" || open(Array(ciphertext.dropLast(5))) == "truncated")
        #expect(open(Array(ciphertext.prefix(StreamingAEAD.headerSize + 128 - StreamingAEAD.headerSize))) == "truncated", "cut at a segment boundary")
        #expect(open(Array(ciphertext.prefix(20))) == "truncated", "cut inside the header")
        #expect(open(ciphertext + [0]) == "authenticationFailed", "a byte appended to a short final segment")
        // A final segment of full size, then a whole segment more.
        let full = try Self.encrypt(aead, Self.plaintext(128 - StreamingAEAD.headerSize - 16 + 112), associatedData: "backup 1")
        let fullParts = Self.segments(full, segmentSize: 128)
        #expect(fullParts.segments.last?.count == 128)
        #expect(open(full) == nil)
        #expect(open(full + fullParts.segments[1]) == "trailingData", "a whole segment after the final one")
        // Another key, another associated data, a segment spliced in from another stream.
        #expect(open(ciphertext, with: try StreamingAEAD(key: SymmetricKey(size: .bits256), segmentSize: 128)) == "authenticationFailed")
        #expect(open(ciphertext, associatedData: "backup 2") == "authenticationFailed")
        let other = Self.segments(try Self.encrypt(aead, plaintext, associatedData: "backup 1"), segmentSize: 128)
        var spliced = parts
        spliced[2] = other.segments[2]
        #expect(open(header + spliced.joined()) == "authenticationFailed", "a segment of another stream under the same key")

        // Nothing of a bad segment comes out: the decryptor returns the good segments before it.
        var swapped = parts
        swapped.swapAt(4, 5)
        var decryptor = aead.makeDecryptor(associatedData: Data("backup 1".utf8))
        var opened: [UInt8] = []
        var failure: EncryptionError?
        for part in [header] + swapped {
            do { opened += try decryptor.update(part) } catch { failure = error; break }
        }
        if failure == nil { do { opened += try decryptor.finish() } catch { failure = error } }
        #expect(failure?.code == .segmentsReordered)
        #expect(Array(plaintext.prefix(opened.count)) == opened && opened.count <= plaintext.count, "only plaintext that authenticated, in order")
        #expect(throws: EncryptionError.self) { try decryptor.update([1]) }
    }

    @Test("bad parameters and misuse are clear errors")
    func misuse() throws {
        #expect(throws: EncryptionError.self) { try StreamingAEAD(key: SymmetricKey(size: .bits128)) }
        #expect(throws: EncryptionError.self) { try StreamingAEAD(key: SymmetricKey(size: .bits256), segmentSize: StreamingAEAD.headerSize + 16) }
        let aead = try StreamingAEAD(key: SymmetricKey(size: .bits256), segmentSize: 64)
        let encryptor = aead.makeEncryptor()
        _ = try encryptor.finish()
        #expect(throws: EncryptionError.self) { try encryptor.update([1]) }
        #expect(throws: EncryptionError.self) { try encryptor.finish() }
        // Two streams under one key never share a salt and nonce prefix.
        let a = try Self.encrypt(aead, [1, 2, 3]), b = try Self.encrypt(aead, [1, 2, 3])
        #expect(a.prefix(StreamingAEAD.headerSize) != b.prefix(StreamingAEAD.headerSize))
    }
}
