/* WS-Discovery and ONVIF messages: built, parsed, and refused when malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "onvif-xml.h"

#define ENV_OPEN                                                                                        \
        "<?xml version=\"1.0\"?><e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\""         \
        " xmlns:w=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\""                                  \
        " xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\">"

static const char probe_matches[] =
        ENV_OPEN "<e:Header><w:RelatesTo>urn:uuid:probe-1</w:RelatesTo></e:Header><e:Body><d:ProbeMatches>"
        "<d:ProbeMatch><w:EndpointReference><w:Address>urn:uuid:cam-a</w:Address></w:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>onvif://www.onvif.org/name/A</d:Scopes>"
        "<d:XAddrs> http://198.18.213.2:8080/onvif/device_service http://[fe80::1]/x </d:XAddrs></d:ProbeMatch>"
        "<d:ProbeMatch><w:EndpointReference><w:Address>urn:uuid:cam-b</w:Address></w:EndpointReference>"
        "<d:XAddrs>http://198.18.213.3/onvif/device_service</d:XAddrs></d:ProbeMatch>"
        "</d:ProbeMatches></e:Body></e:Envelope>";

static char *error;

static int teardown_error(void **state) {
        free(error);
        error = NULL;
        return 0;
}

static void test_probe_roundtrip(void **state) {
        char *probe = wsd_build_probe("urn:uuid:1234");
        WsdMessage m;

        assert_non_null(strstr(probe, "<a:MessageID>urn:uuid:1234</a:MessageID>"));
        assert_non_null(strstr(probe, "dn:NetworkVideoTransmitter"));
        assert_int_equal(wsd_parse(probe, strlen(probe), &m, &error), 0);
        assert_int_equal(m.kind, WSD_OTHER);
        wsd_message_clear(&m);
        free(probe);
}

static void test_probe_matches(void **state) {
        WsdMessage m;
        char *x;

        assert_int_equal(wsd_parse(probe_matches, strlen(probe_matches), &m, &error), 0);
        assert_int_equal(m.kind, WSD_PROBE_MATCHES);
        assert_string_equal(m.relates_to, "urn:uuid:probe-1");
        assert_int_equal(m.n_matches, 2);
        assert_string_equal(m.matches[0].endpoint, "urn:uuid:cam-a");
        assert_string_equal(m.matches[0].types, "dn:NetworkVideoTransmitter");
        x = wsd_first_xaddr(m.matches[0].xaddrs);
        assert_string_equal(x, "http://198.18.213.2:8080/onvif/device_service");
        free(x);
        assert_string_equal(m.matches[1].endpoint, "urn:uuid:cam-b");
        wsd_message_clear(&m);
        assert_null(wsd_first_xaddr("ftp://a  gopher://b"));
}

static void expect_bad(const char *xml, const char *what) {
        WsdMessage m = {};

        free(error);
        error = NULL;
        assert_int_equal(wsd_parse(xml, strlen(xml), &m, &error), -EBADMSG);
        assert_non_null(error);
        if (!strstr(error, what))
                fail_msg("error \"%s\" does not say \"%s\"", error, what);
        assert_int_equal(m.n_matches, 0);
}

static void test_malformed_discovery(void **state) {
        expect_bad("not xml at all", "malformed XML");
        expect_bad(ENV_OPEN "<e:Body><d:ProbeMatches><d:ProbeMatch>", "malformed XML");
        expect_bad("<html><body>hello</body></html>", "not a SOAP envelope");
        expect_bad(ENV_OPEN "</e:Envelope>", "without a Body");
        expect_bad(ENV_OPEN "<e:Body><d:ProbeMatches><d:ProbeMatch><d:XAddrs>http://x/</d:XAddrs></d:ProbeMatch>"
                            "</d:ProbeMatches></e:Body></e:Envelope>",
                   "without EndpointReference/Address");
        expect_bad(ENV_OPEN "<e:Body><d:ProbeMatches><d:ProbeMatch><w:EndpointReference><w:Address>urn:x"
                            "</w:Address></w:EndpointReference></d:ProbeMatch></d:ProbeMatches></e:Body></e:Envelope>",
                   "without XAddrs");
}

static void test_huge_and_entities(void **state) {
        size_t n = ONVIF_MAX_BODY + 100;
        char *big = malloc(n + 1);
        WsdMessage m = {};
        OnvifDeviceInfo info;
        /* Entities are never expanded (a "billion laughs" answer costs nothing). */
        static const char laughs[] =
                "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY a \"aaaaaaaaaaaaaaaaaaaa\">"
                "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
                "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY f \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">]>"
                "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\"><e:Body>"
                "<GetDeviceInformationResponse><Manufacturer>&f;&f;&f;&f;&f;</Manufacturer><Model>m</Model>"
                "</GetDeviceInformationResponse></e:Body></e:Envelope>";

        memset(big, ' ', n);
        memcpy(big, "<a>", 3);
        big[n] = 0;
        assert_int_equal(wsd_parse(big, n, &m, &error), -EBADMSG);
        assert_non_null(strstr(error, "too big"));
        free(big);
        free(error);
        error = NULL;
        if (onvif_parse_device_info(laughs, strlen(laughs), &info, &error) == 0) {
                assert_true(strlen(info.manufacturer) < 1000);
                onvif_device_info_clear(&info);
        } else
                assert_non_null(error);
}

static void test_hello_bye(void **state) {
        static const char hello[] = ENV_OPEN "<e:Body><d:Hello><w:EndpointReference><w:Address>urn:uuid:cam-c"
                                             "</w:Address></w:EndpointReference><d:Types>dn:NetworkVideoTransmitter"
                                             "</d:Types><d:XAddrs>http://198.18.213.4/onvif</d:XAddrs></d:Hello>"
                                             "</e:Body></e:Envelope>";
        static const char bye[] = ENV_OPEN "<e:Body><d:Bye><w:EndpointReference><w:Address>urn:uuid:cam-c"
                                           "</w:Address></w:EndpointReference></d:Bye></e:Body></e:Envelope>";
        WsdMessage m;

        assert_int_equal(wsd_parse(hello, strlen(hello), &m, &error), 0);
        assert_int_equal(m.kind, WSD_HELLO);
        assert_string_equal(m.matches[0].endpoint, "urn:uuid:cam-c");
        assert_string_equal(m.matches[0].xaddrs, "http://198.18.213.4/onvif");
        wsd_message_clear(&m);
        assert_int_equal(wsd_parse(bye, strlen(bye), &m, &error), 0);
        assert_int_equal(m.kind, WSD_BYE);
        assert_string_equal(m.matches[0].endpoint, "urn:uuid:cam-c");
        wsd_message_clear(&m);
}

static void test_username_token(void **state) {
        unsigned char nonce[16];
        char *d, *req;

        for (int i = 0; i < 16; i++)
                nonce[i] = (unsigned char)i;
        /* Base64(SHA1(nonce + created + password)), computed independently. */
        d = onvif_password_digest(nonce, 16, "2026-01-01T00:00:00Z", "secret");
        assert_string_equal(d, "Zp5M/ztyvf9G14qXDvS2VCbwotA=");
        free(d);

        req = onvif_build_request("<tds:GetDeviceInformation/>", "ad<min", "secret", nonce, 1767225600);
        assert_non_null(strstr(req, "<wsse:Username>ad&lt;min</wsse:Username>"));
        assert_non_null(strstr(req, "#PasswordDigest\">"));
        assert_non_null(strstr(req, "<wsu:Created>2026-01-01T00:00:00Z</wsu:Created>"));
        assert_non_null(strstr(req, "AAECAwQFBgcICQoLDA0ODw==")); /* the nonce, base64 */
        assert_null(strstr(req, "secret"));
        assert_non_null(strstr(req, "<s:Body><tds:GetDeviceInformation/></s:Body>"));
        free(req);
        req = onvif_build_request("<x/>", NULL, NULL, nonce, 0);
        assert_null(strstr(req, "Security"));
        free(req);
}

#define SOAP(body) "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>" body "</s:Body></s:Envelope>"

static void test_onvif_answers(void **state) {
        static const char info_xml[] = SOAP("<tds:GetDeviceInformationResponse xmlns:tds=\"x\"><tds:Manufacturer>"
                                            "Acme</tds:Manufacturer><tds:Model>Cam 1</tds:Model><tds:FirmwareVersion>"
                                            "2.1</tds:FirmwareVersion><tds:SerialNumber>S1</tds:SerialNumber>"
                                            "</tds:GetDeviceInformationResponse>");
        static const char caps_xml[] = SOAP("<GetCapabilitiesResponse><Capabilities><Media><XAddr>"
                                            "http://198.18.213.2/onvif/media</XAddr></Media></Capabilities>"
                                            "</GetCapabilitiesResponse>");
        static const char profiles_xml[] =
                SOAP("<GetProfilesResponse><Profiles token=\"main\"><Name>Main</Name><VideoEncoderConfiguration>"
                     "<Encoding>H264</Encoding><Resolution><Width>1280</Width><Height>720</Height></Resolution>"
                     "</VideoEncoderConfiguration></Profiles><Profiles token=\"sub\"><Name>Sub</Name></Profiles>"
                     "</GetProfilesResponse>");
        static const char uri_xml[] = SOAP("<GetStreamUriResponse><MediaUri><Uri>rtsp://198.18.213.2:8554/main</Uri>"
                                           "</MediaUri></GetStreamUriResponse>");
        static const char fault_xml[] =
                SOAP("<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>ter:NotAuthorized</s:Value>"
                     "</s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en\">Sender not authorized</s:Text>"
                     "</s:Reason></s:Fault>");
        OnvifDeviceInfo info;
        OnvifProfile *p;
        size_t n;
        char *s;

        assert_int_equal(onvif_parse_device_info(info_xml, strlen(info_xml), &info, &error), 0);
        assert_string_equal(info.manufacturer, "Acme");
        assert_string_equal(info.model, "Cam 1");
        assert_string_equal(info.firmware, "2.1");
        onvif_device_info_clear(&info);

        assert_int_equal(onvif_parse_media_xaddr(caps_xml, strlen(caps_xml), &s, &error), 0);
        assert_string_equal(s, "http://198.18.213.2/onvif/media");
        free(s);

        assert_int_equal(onvif_parse_profiles(profiles_xml, strlen(profiles_xml), &p, &n, &error), 0);
        assert_int_equal(n, 2);
        assert_string_equal(p[0].token, "main");
        assert_string_equal(p[0].encoding, "H264");
        assert_int_equal(p[0].width, 1280);
        assert_int_equal(p[0].height, 720);
        assert_null(p[1].encoding);
        onvif_profiles_free(p, n);

        assert_int_equal(onvif_parse_stream_uri(uri_xml, strlen(uri_xml), &s, &error), 0);
        assert_string_equal(s, "rtsp://198.18.213.2:8554/main");
        free(s);

        assert_int_equal(onvif_parse_device_info(fault_xml, strlen(fault_xml), &info, &error), -EBADMSG);
        assert_string_equal(error, "SOAP fault ter:NotAuthorized: Sender not authorized");
        free(error);
        error = NULL;
        assert_int_equal(onvif_parse_stream_uri(info_xml, strlen(info_xml), &s, &error), -EBADMSG);
        assert_string_equal(error, "no GetStreamUriResponse in the answer");
        free(error);
        error = NULL;
        assert_int_equal(onvif_parse_stream_uri(SOAP("<GetStreamUriResponse><MediaUri><Uri>http://x/</Uri>"
                                                     "</MediaUri></GetStreamUriResponse>"),
                                                strlen(SOAP("<GetStreamUriResponse><MediaUri><Uri>http://x/</Uri>"
                                                            "</MediaUri></GetStreamUriResponse>")),
                                                &s, &error),
                         -EBADMSG);
}

static void test_urls(void **state) {
        char *s;

        s = url_strip_credentials("rtsp://admin:p@ss@198.18.213.3:8554/main?x=1");
        assert_string_equal(s, "rtsp://198.18.213.3:8554/main?x=1");
        free(s);
        s = url_strip_credentials("rtsp://198.18.213.3/a@b");
        assert_string_equal(s, "rtsp://198.18.213.3/a@b");
        free(s);
        s = url_with_credentials("rtsp://old:x@198.18.213.3:8554/main", "ad min", "p@ss:w/rd");
        assert_string_equal(s, "rtsp://ad%20min:p%40ss%3Aw%2Frd@198.18.213.3:8554/main");
        free(s);
        s = url_with_credentials("rtsp://198.18.213.3/main", NULL, NULL);
        assert_string_equal(s, "rtsp://198.18.213.3/main");
        free(s);
        s = url_host("http://u:p@198.18.213.3:8080/onvif");
        assert_string_equal(s, "198.18.213.3");
        free(s);
        s = url_host("http://[fe80::1]:80/x");
        assert_string_equal(s, "fe80::1");
        free(s);
        assert_null(url_host("no-scheme"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_probe_roundtrip, teardown_error),
                cmocka_unit_test_teardown(test_probe_matches, teardown_error),
                cmocka_unit_test_teardown(test_malformed_discovery, teardown_error),
                cmocka_unit_test_teardown(test_huge_and_entities, teardown_error),
                cmocka_unit_test_teardown(test_hello_bye, teardown_error),
                cmocka_unit_test_teardown(test_username_token, teardown_error),
                cmocka_unit_test_teardown(test_onvif_answers, teardown_error),
                cmocka_unit_test_teardown(test_urls, teardown_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
