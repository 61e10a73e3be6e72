# The voice webhook: TwiML answers, escaping, signatures, bad input.

use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(hmac_sha1_base64);

no_shuffle();
run_tests();

sub sign {
    my ($token, $data) = @_;
    my $s = hmac_sha1_base64($data, $token);
    return $s . '=' x ((4 - length($s) % 4) % 4);
}

__DATA__

=== TEST 1: POST answers TwiML with the stream and its parameters
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/twilio/media;
        twirt_parameter agent sales;
        twirt_parameter from $twirt_param_From;
        twirt_parameter call $twirt_param_callsid;
    }
--- request
POST /twilio/voice
CallSid=CA123&From=%2B81312345678&To=%2B815011112222
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_headers
Content-Type: text/xml
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect><Stream url="wss://gw.example.com/twilio/media"><Parameter name="agent" value="sales"/><Parameter name="from" value="+81312345678"/><Parameter name="call" value="CA123"/></Stream></Connect></Response>
--- no_error_log
[error]



=== TEST 2: GET takes Twilio's parameters from the query string
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_parameter to $twirt_param_To;
    }
--- request
GET /twilio/voice?CallSid=CA9&To=%2B815011112222
--- more_headers
Host: gw.example.com
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect><Stream url="wss://gw.example.com/twilio/media"><Parameter name="to" value="+815011112222"/></Stream></Connect></Response>
--- no_error_log
[error]



=== TEST 3: the default stream URL keeps the port of the Host header
--- config
    location = /twilio/voice { twirt_twiml; }
--- request
GET /twilio/voice?CallSid=CA9
--- more_headers
Host: gw.example.com:8443
--- response_body_like: <Stream url="wss://gw\.example\.com:8443/twilio/media">
--- no_error_log
[error]



=== TEST 4: Japanese text round-trips byte for byte, around the stream
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_say "お電話ありがとうございます。" language=ja-JP voice=Polly.Mizuki;
        twirt_parameter greeting "こんにちは、{{name}}さん";
        twirt_parameter caller $twirt_param_CallerName;
        twirt_connect_action /twilio/after;
        twirt_fallback_say "申し訳ございません。ただいま電話が混み合っております。" language=ja-JP;
        twirt_stream_url wss://gw.example.com/twilio/media;
    }
--- request
POST /twilio/voice
CallSid=CA1&CallerName=%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E
--- more_headers
Content-Type: application/x-www-form-urlencoded; charset=utf-8
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Say language="ja-JP" voice="Polly.Mizuki">お電話ありがとうございます。</Say><Connect action="/twilio/after" method="POST"><Stream url="wss://gw.example.com/twilio/media"><Parameter name="greeting" value="こんにちは、{{name}}さん"/><Parameter name="caller" value="山田太郎"/></Stream></Connect></Response>
--- no_error_log
[error]



=== TEST 5: values from the caller are XML-escaped, control bytes dropped, bad UTF-8 replaced
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/twilio/media;
        twirt_parameter from $twirt_param_From;
        twirt_say "$twirt_param_From & co";
    }
--- request
POST /twilio/voice
CallSid=CA1&From=%3C%2FParameter%3E%22%27%26%01%FF%E3%81%82
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Say>&lt;/Parameter&gt;&quot;&apos;&amp;�あ &amp; co</Say><Connect><Stream url="wss://gw.example.com/twilio/media"><Parameter name="from" value="&lt;/Parameter&gt;&quot;&apos;&amp;�あ"/></Stream></Connect></Response>



=== TEST 6: Connect action; the fallback dial is the action's to answer, never after </Connect>
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/twilio/media;
        twirt_connect_action https://gw.example.com/twilio/after?call=$twirt_param_CallSid method=GET;
        twirt_fallback_dial +81312345678 caller_id=+815011112222;
    }
--- request
POST /twilio/voice
CallSid=CA7
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect action="https://gw.example.com/twilio/after?call=CA7" method="GET"><Stream url="wss://gw.example.com/twilio/media"></Stream></Connect></Response>



=== TEST 7: the signature of Twilio's documented worked example is accepted
--- config
    location = /myapp.php {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: L/OH5YylLD5NRKLltdqwSvS0BnU=
--- error_code: 200
--- response_body_like: <Stream url=
--- no_error_log
[warn]



=== TEST 7.1: a repeated name signed as Twilio's validators sign it (by name, then by value, every value) passes the signature check
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&To=%2B2&To=%2B1
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com/voiceCallSidCA1To+1To+2")
--- error_code: 400
--- error_log
parameter "To" is repeated
--- no_error_log
[warn]



=== TEST 7.2: a repeated name signed in body order instead of value order is refused
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&To=%2B2&To=%2B1
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com/voiceCallSidCA1To+2To+1")
--- error_code: 403
--- error_log
invalid X-Twilio-Signature for CallSid "CA1"



=== TEST 7.3: invalid UTF-8 (%FF) in a value is signed as its bytes
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&From=%FF%2B81%C3
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com/voiceCallSidCA1From\xff+81\xc3")
--- error_code: 200
--- no_error_log
[warn]



=== TEST 7.4: names outside the BMP sort in byte order (code points, as Twilio's documentation and its Python validator): U+FF5A before U+1F600
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&%F0%9F%98%80=smile&%EF%BD%9A=z
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com/voiceCallSidCA1\xef\xbd\x9az\xf0\x9f\x98\x80smile")
--- error_code: 200
--- no_error_log
[warn]



=== TEST 7.5: the same names in UTF-16 order (U+1F600's surrogates before U+FF5A) is not what twirt checks
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&%F0%9F%98%80=smile&%EF%BD%9A=z
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com/voiceCallSidCA1\xf0\x9f\x98\x80smile\xef\xbd\x9az")
--- error_code: 403
--- error_log
invalid X-Twilio-Signature for CallSid "CA1"



=== TEST 8: a wrong signature is refused with 403 and a warning naming the CallSid
--- config
    location = /myapp.php {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551213
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: L/OH5YylLD5NRKLltdqwSvS0BnU=
--- error_code: 403
--- response_body_unlike: Stream
--- error_log
invalid X-Twilio-Signature for CallSid "CA1234567890ABCDE"



=== TEST 9: a missing signature is refused with 403
--- config
    location = /myapp.php {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
    }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA55
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 403
--- error_log
missing X-Twilio-Signature for CallSid "CA55"



=== TEST 10: a signature made with the default port matches a URL without it
--- config
    location = /myapp.php {
        twirt_twiml;
        twirt_twilio_auth_token 12345;
        twirt_public_url https://example.com$request_uri;
    }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("12345", "https://example.com:443/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675310Digits1234From+14158675310To+18005551212")
--- error_code: 200
--- no_error_log
[warn]



=== TEST 11: a signature with the port matches a configured URL without it
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token secret;
        twirt_public_url https://gw.example.com:8443$request_uri;
    }
--- request
POST /voice
CallSid=CA1
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("secret", "https://gw.example.com/voiceCallSidCA1")
--- error_code: 200



=== TEST 12: without twirt_public_url, the https URL of the Host is signed (tunnels)
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token secret;
    }
--- request
POST /voice?x=1
To=%2B81&CallSid=CA1
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
Host: abc.ngrok.example
X-Twilio-Signature: " . main::sign("secret", "https://abc.ngrok.example/voice?x=1CallSidCA1To+81")
--- error_code: 200



=== TEST 13: GET signs the URL alone
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token secret;
        twirt_public_url https://gw.example.com$request_uri;
    }
--- request
GET /voice?CallSid=CA1&From=%2B81
--- more_headers eval
"X-Twilio-Signature: " . main::sign("secret", "https://gw.example.com/voice?CallSid=CA1&From=%2B81")
--- error_code: 200



=== TEST 14: the signature covers the parameters: a changed value is refused
--- config
    location = /voice {
        twirt_twiml;
        twirt_twilio_auth_token secret;
        twirt_public_url https://gw.example.com$request_uri;
    }
--- request
POST /voice
CallSid=CA1&From=%2B82
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("secret", "https://gw.example.com/voiceCallSidCA1From+81")
--- error_code: 403
--- error_log
invalid X-Twilio-Signature for CallSid "CA1"



=== TEST 15: malformed percent-encoding is a 400
--- config
    location = /voice { twirt_twiml; }
--- request
POST /voice
CallSid=CA1&From=%2
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 400
--- error_log
malformed percent-encoding



=== TEST 16: a repeated parameter is a 400
--- config
    location = /voice { twirt_twiml; }
--- request
POST /voice
CallSid=CA1&From=%2B81&From=%2B82
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 400
--- error_log
parameter "From" is repeated



=== TEST 17: a body over twirt_twiml_max_body_size is a 413
--- config
    location = /voice {
        twirt_twiml;
        twirt_twiml_max_body_size 1k;
    }
--- request eval
"POST /voice\n" . "CallSid=CA1&Pad=" . ("x" x 2000)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 413
--- error_log
is larger than twirt_twiml_max_body_size 1024



=== TEST 18: a body that is not a form is a 415
--- config
    location = /voice { twirt_twiml; }
--- request
POST /voice
{"CallSid":"CA1"}
--- more_headers
Content-Type: application/json
--- error_code: 415
--- error_log
is not application/x-www-form-urlencoded



=== TEST 19: a request without CallSid is a 400
--- config
    location = /voice { twirt_twiml; }
--- request
POST /voice
From=%2B81
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 400
--- error_log
request without CallSid



=== TEST 20: a parameter over Twilio's 500 characters at request time is dropped with an error, the call answered
--- config
    location = /voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/m;
        twirt_parameter agent sales;
        twirt_parameter note $twirt_param_Note;
        twirt_parameter from $twirt_param_From;
    }
--- request eval
"POST /voice\nCallSid=CA1&From=%2B81&Note=SECRET" . ("%E3%81%82" x 490)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 200
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect><Stream url="wss://gw.example.com/m"><Parameter name="agent" value="sales"/><Parameter name="from" value="+81"/></Stream></Connect></Response>
--- error_log
parameter "note" is 500 characters with its name, Twilio allows less than 500: not sent
--- no_error_log eval
[qr/\[error\].*SECRET/]



=== TEST 21: 499 characters with the name is still accepted (counted in characters, not bytes)
--- config
    location = /voice {
        twirt_twiml;
        twirt_parameter note $twirt_param_Note;
    }
--- request eval
"POST /voice\nCallSid=CA1&Note=" . ("%E3%81%82" x 495)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 200
--- no_error_log
[error]



=== TEST 22: other methods are refused with 405
--- config
    location = /voice { twirt_twiml; }
--- request
PUT /voice
CallSid=CA1
--- error_code: 405



=== TEST 23: a variable of a parameter Twilio did not send is empty
--- config
    location = /voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/m;
        twirt_parameter digits "[$twirt_param_Digits]";
    }
--- request
GET /voice?CallSid=CA1
--- response_body_like: <Parameter name="digits" value="\[\]"/>



=== TEST 24: CR, LF and TAB in attribute values are character references, so that they survive attribute-value normalisation
--- config
    location = /voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/m;
        twirt_parameter note $twirt_param_Note;
        twirt_say "$twirt_param_Note";
    }
--- request
POST /voice
CallSid=CA1&Note=a%0D%0Ab%09c%0Dd%0Ae
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body eval
qq{<?xml version="1.0" encoding="UTF-8"?>\n<Response><Say>a&#13;\nb\tc&#13;d\ne</Say><Connect><Stream url="wss://gw.example.com/m"><Parameter name="note" value="a&#13;&#10;b&#9;c&#13;d&#10;e"/></Stream></Connect></Response>\n}
--- no_error_log
[error]



=== TEST 25: a body of 4000 distinct names (and CallSid) is answered, the repeat check sorting once (n log n comparisons, not n squared)
--- config
    location = /voice {
        twirt_twiml;
        twirt_twiml_max_body_size 64k;
        twirt_stream_url wss://gw.example.com/m;
        twirt_parameter last $twirt_param_p3999;
    }
--- request eval
"POST /voice\nCallSid=CA1&" . CORE::join('&', map { "p$_=$_" } 0 .. 3998) . "&p3999=end"
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 200
--- response_body_like: <Parameter name="last" value="end"/>
--- error_log eval
# 4000 * log2(4000) is about 48000; the pairwise check made 8 million
[qr/twirt: 4001 parameters checked for repeats with (\d+)(?(?{ $^N > 2 * 4000 * 12 })(*FAIL)) comparisons/]
--- no_error_log
[error]



=== TEST 26: the first name that repeats is the one named, whatever the sort order
--- config
    location = /voice { twirt_twiml; }
--- request
POST /voice
CallSid=CA1&B=1&A=1&B=2&A=2
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 400
--- error_log
parameter "B" is repeated



=== TEST 27: <Stream statusCallback> and its method
--- config
    location = /voice {
        twirt_twiml;
        twirt_stream_url wss://gw.example.com/m;
        twirt_stream_status_callback https://gw.example.com/twilio/stream-status method=GET;
    }
--- request
GET /voice?CallSid=CA1
--- response_body_like: <Stream url="wss://gw\.example\.com/m" statusCallback="https://gw\.example\.com/twilio/stream-status" statusCallbackMethod="GET">



=== TEST 28: a signed stream-error is a call event, its untrusted text escaped in the log, answered 204
--- config
    location = /twilio/stream-status {
        twirt_stream_status;
        twirt_twilio_auth_token secret;
        twirt_public_url https://gw.example.com$request_uri;
    }
--- request
POST /twilio/stream-status
AccountSid=AC1&CallSid=CA1&StreamSid=MZ1&StreamName=s1&StreamEvent=stream-error&StreamError=bad%0D%0A[error] forged%00line&Timestamp=2026-11-30T12%3A00%3A00Z
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: " . main::sign("secret", "https://gw.example.com/twilio/stream-statusAccountSidAC1CallSidCA1StreamErrorbad\r\n[error] forged\0lineStreamEventstream-errorStreamNames1StreamSidMZ1Timestamp2026-11-30T12:00:00Z")
--- error_code: 204
--- response_body:
--- error_log
[warn]
twirt: event {"account_sid":"AC1","call_sid":"CA1","error":"bad\r\n[error] forged\u0000line","event":"stream-error","stream_name":"s1","stream_sid":"MZ1","timestamp":"2026-11-30T12:00:00Z","type":"stream"}
--- no_error_log eval
[qr/^\[error\] forged/m]



=== TEST 29: stream-started and stream-stopped are logged at info
--- config
    location = /twilio/stream-status { twirt_stream_status; }
--- request
POST /twilio/stream-status
CallSid=CA1&StreamSid=MZ1&StreamEvent=stream-started
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 204
--- error_log
[info]
twirt: event {"call_sid":"CA1","event":"stream-started","stream_sid":"MZ1","type":"stream"}



=== TEST 30: an unsigned stream status callback is refused when a token is set
--- config
    location = /twilio/stream-status {
        twirt_stream_status;
        twirt_twilio_auth_token secret;
    }
--- request
POST /twilio/stream-status
CallSid=CA1&StreamSid=MZ1&StreamEvent=stream-started
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 403
--- error_log
missing X-Twilio-Signature for CallSid "CA1"
--- no_error_log
twirt: event



=== TEST 31: a stream status without StreamEvent, or with a CallSid that is no SID, is a 400
--- config
    location = /twilio/stream-status { twirt_stream_status; }
--- request eval
["POST /twilio/stream-status\nCallSid=CA1&StreamSid=MZ1",
 "POST /twilio/stream-status\nCallSid=CA1%3Ax&StreamEvent=stream-started"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[400, 400]
--- error_log
without a StreamEvent or with an invalid CallSid



=== TEST 32: CR and LF in the CallSid of a <Connect action> request cannot forge a log line: the fallback, logged escaped
--- config
    location = /twilio/after {
        twirt_action;
        twirt_fallback_say "fallback";
    }
--- request
POST /twilio/after
CallSid=CA1%0D%0A1999/01/01%2000:00:00%20[alert]%201%231:%20forged
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Say>fallback</Say>
--- error_log eval
[qr/<Connect action> for an invalid CallSid "CA1\\x0d\\x0a1999\/01\/01/,
 qr/stream of CallSid "CA1\\x0d\\x0a1999\/01\/01 00:00:00 \[alert\] 1#1: forged" ended/]
--- no_error_log eval
[qr/^1999\/01\/01/]



=== TEST 33: CR and LF in the CallSid of a wrongly signed webhook cannot forge a log line
--- config
    location = /twilio/voice {
        twirt_twiml;
        twirt_twilio_auth_token secret;
    }
--- request
POST /twilio/voice
CallSid=CA2%0A1999/01/01%2000:00:00%20[alert]%201%231:%20forged
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 403
--- error_log eval
[qr/missing X-Twilio-Signature for CallSid "CA2\\x0a1999\/01\/01/]
--- no_error_log eval
[qr/^1999\/01\/01/]
