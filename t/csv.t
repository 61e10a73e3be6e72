# CSV uploads of campaign rows (src/ngx_http_twirt_csv.c), driven through
# the test build's twirt_csv_test handler: a POSTed file comes back as the
# rows in compact JSON, or as "error: " and the message.  Shift_JIS bytes
# are made here by Perl's Encode (cp932) and by python3, never by the
# iconv that the module reads them with.

use strict;
use warnings;
use Encode ();
use File::Temp ();
use Test::Nginx::Socket 'no_plan';

no_shuffle();

add_block_preprocessor(sub {
    my ($block) = @_;

    $block->set_value('config', <<'CONF') unless defined $block->config;
    location = /csv {
        twirt_csv_test;
        client_max_body_size 16m;
        client_body_buffer_size 16m;
    }
CONF
    $block->set_value('no_error_log', "[error]\n[alert]")
        unless defined $block->no_error_log;
});

# eval sections run in Test::Base::Filter: the helpers are there too
{
    no strict 'refs';
    *{"Test::Base::Filter::$_"} = \&{"main::$_"} for qw(csv cp932 cp932_python);
}

run_tests();

# a POST of these bytes, as they are
sub csv {
    my ($body) = @_;
    return "POST /csv HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: text/csv\r\nContent-Length: " . length($body)
        . "\r\n\r\n" . $body;
}

# UTF-8 text (as written in this file) as CP932 bytes, by Perl's Encode
sub cp932 {
    my ($text) = @_;
    return Encode::encode('cp932', Encode::decode('UTF-8', $text),
                          Encode::FB_CROAK);
}

# the same by python3: another table (髙 is EEE0 there, FBFC in Perl's)
sub cp932_python {
    my ($text) = @_;
    my $python = $ENV{TWIRT_PYTHON} || 'python3';
    my $in = File::Temp->new;
    print $in $text;
    close $in;
    open(my $fh, '-|', $python, '-c',
         'import sys; sys.stdout.buffer.write(open(sys.argv[1], "rb")'
         . '.read().decode("utf-8").encode("cp932"))', $in->filename)
        or die "$python: $!";
    local $/;
    my $out = <$fh>;
    close $fh or die "$python failed\n";
    return $out;
}

__DATA__

=== TEST 1: UTF-8 with a BOM, CRLF: the rows, their lines, the phone cell as written
--- raw_request eval
csv("\xef\xbb\xbfto,name,company\r\n090-1234-5678,山田太郎,髙橋商事\r\n+81 3 1234 5678,Smith,ACME\r\n")
--- response_body
[{"line":2,"to":"090-1234-5678","variables":{"name":"山田太郎","company":"髙橋商事"}},{"line":3,"to":"+81 3 1234 5678","variables":{"name":"Smith","company":"ACME"}}]



=== TEST 2: UTF-8 without a BOM, Japanese header names, LF, no newline at the end
--- raw_request eval
csv("電話番号,氏名,会社名\n03-1234-5678,佐藤花子,①株式会社\n０９０１２３４５６７８,ｶﾀｶﾅ,～")
--- response_body
[{"line":2,"to":"03-1234-5678","variables":{"氏名":"佐藤花子","会社名":"①株式会社"}},{"line":3,"to":"０９０１２３４５６７８","variables":{"氏名":"ｶﾀｶﾅ","会社名":"～"}}]



=== TEST 3: Shift_JIS from Excel (CP932, Perl's Encode): IBM and NEC extensions, half-width katakana, ～ and －
--- raw_request eval
csv(cp932("電話,氏名,会社,メモ\r\n090-1111-2222,髙橋太郎,ソニー表計算,①ｶﾀｶﾅ～－\r\n"))
--- response_body
[{"line":2,"to":"090-1111-2222","variables":{"氏名":"髙橋太郎","会社":"ソニー表計算","メモ":"①ｶﾀｶﾅ～－"}}]



=== TEST 4: Shift_JIS (CP932) from python3, quoted cells with commas, CRLF inside quotes
--- raw_request eval
csv(cp932_python(qq{電話番号,氏名,住所\r\n"03-0000-1111","髙田, ①","東京都\r\n港区"\r\n04-1111-2222,ﾃｽﾄ,\\\r\n}))
--- response_body
[{"line":2,"to":"03-0000-1111","variables":{"氏名":"髙田, ①","住所":"東京都\r\n港区"}},{"line":4,"to":"04-1111-2222","variables":{"氏名":"ﾃｽﾄ","住所":"\\"}}]



=== TEST 5: quoted cells: commas, doubled quotes, newlines; the line of a record is where it starts
--- raw_request eval
csv(qq{to,name,note\n"090-1234-5678","Yamada, Taro","He said ""hi""\nsecond line"\n2,"",""""\n3,x,"a\r\nb\rc"\n4,y,z\n})
--- response_body
[{"line":2,"to":"090-1234-5678","variables":{"name":"Yamada, Taro","note":"He said \"hi\"\nsecond line"}},{"line":4,"to":"2","variables":{"name":"","note":"\""}},{"line":5,"to":"3","variables":{"name":"x","note":"a\r\nb\rc"}},{"line":8,"to":"4","variables":{"name":"y","note":"z"}}]



=== TEST 6: records end with CR alone, LF or CRLF, mixed
--- raw_request eval
csv("to,a\r1,x\r2,y\n3,z\r\n4,w")
--- response_body
[{"line":2,"to":"1","variables":{"a":"x"}},{"line":3,"to":"2","variables":{"a":"y"}},{"line":4,"to":"3","variables":{"a":"z"}},{"line":5,"to":"4","variables":{"a":"w"}}]



=== TEST 7: empty lines are skipped (also before the header, and blank ones), lines still count
--- raw_request eval
csv("\r\n\nto,name\n\n1,a\n   \n2,b\r\n\r\n\n")
--- response_body
[{"line":5,"to":"1","variables":{"name":"a"}},{"line":7,"to":"2","variables":{"name":"b"}}]



=== TEST 8: unquoted cells and header names are trimmed, quoted cells keep their spaces but the phone cell's
--- raw_request eval
csv(qq{  to ,\tname\t, " note "\n 090 ,  Yamada Taro  , " a " \n" 091\t",b,c\n})
--- response_body
[{"line":2,"to":"090","variables":{"name":"Yamada Taro","note":" a "}},{"line":3,"to":"091","variables":{"name":"b","note":"c"}}]



=== TEST 9: fewer cells than columns: the missing variables are "", and so are empty ones; a lone quote in an unquoted cell is text
--- raw_request eval
csv("to,a,b\n1\n2,x\n3,,\n4,5\"6,\n")
--- response_body
[{"line":2,"to":"1","variables":{"a":"","b":""}},{"line":3,"to":"2","variables":{"a":"x","b":""}},{"line":4,"to":"3","variables":{"a":"","b":""}},{"line":5,"to":"4","variables":{"a":"5\"6","b":""}}]



=== TEST 10: the phone column is the first named to, phone, number, 電話番号 or 電話, in any case; later ones are variables
--- raw_request eval
csv("name,Phone,TO,電話\nx,1,2,3\n")
--- response_body
[{"line":2,"to":"1","variables":{"name":"x","TO":"2","電話":"3"}}]



=== TEST 11: a column with an empty name is ignored; the phone column may be missing from a short record
--- raw_request eval
csv("name,,number\nx,ignored,1\ny\n")
--- response_body
[{"line":2,"to":"1","variables":{"name":"x"}},{"line":3,"to":"","variables":{"name":"y"}}]



=== TEST 12: a header alone is no rows
--- raw_request eval
csv("\xef\xbb\xbfto,name\r\n")
--- response_body
[]



=== TEST 13: more cells than the header has columns
--- raw_request eval
csv("to,a\n1,x\n2,y,z\n")
--- response_body
error: line 3: more cells than the header has columns (2)



=== TEST 14: a trailing comma is one cell more
--- raw_request eval
csv("to,a\n1,x,\n")
--- response_body
error: line 2: more cells than the header has columns (2)



=== TEST 15: an unclosed quote: the line where its record starts
--- raw_request eval
csv("to,a\n1,x\n2,\"y\n3,z\n4,w\n")
--- response_body
error: line 3: a quoted field is not closed



=== TEST 16: an unclosed quote in the header
--- raw_request eval
csv("to,\"name\n")
--- response_body
error: line 1: a quoted field is not closed



=== TEST 17: text after a closing quote
--- raw_request eval
csv("to,a\n1,\"x\"y\n")
--- response_body
error: line 2: text after the closing quote of a field: quote the whole field, and double the quotes inside



=== TEST 18: no phone column
--- raw_request eval
csv("name,company\nx,y\n")
--- response_body
error: no phone column: name one to, phone, number, 電話番号 or 電話



=== TEST 19: an empty file
--- raw_request eval
csv("")
--- response_body
error: the file is empty



=== TEST 20: a BOM alone, empty lines alone
--- raw_request eval
[csv("\xef\xbb\xbf"), csv("\r\n\n \n")]
--- response_body eval
["error: the file is empty\n", "error: the file is empty\n"]



=== TEST 21: bad header names, each named with its column
--- raw_request eval
[csv("to,first name\n"), csv("to,a-b\n"), csv("to,\"x\"\"y\"\n"),
 csv("to,ok," . ("a" x 65) . "\n"), csv("to,\"a\nb\"\n"),
 csv("to," . ("名" x 22) . "\n")]
--- response_body eval
["error: line 1, column 2: the column name \"first name\" is not allowed: use letters, digits and _ (at most 64 bytes)\n",
 "error: line 1, column 2: the column name \"a-b\" is not allowed: use letters, digits and _ (at most 64 bytes)\n",
 "error: line 1, column 2: the column name \"x?y\" is not allowed: use letters, digits and _ (at most 64 bytes)\n",
 "error: line 1, column 3: the column name \"" . ("a" x 32) . "...\" is not allowed: use letters, digits and _ (at most 64 bytes)\n",
 "error: line 1, column 2: the column name \"a?b\" is not allowed: use letters, digits and _ (at most 64 bytes)\n",
 "error: line 1, column 2: the column name \"" . ("名" x 10) . "...\" is not allowed: use letters, digits and _ (at most 64 bytes)\n"]



=== TEST 22: names of 64 bytes, digits first, underscores and Japanese are allowed
--- raw_request eval
csv("to," . ("a" x 64) . ",1_x,名前_2\n1,a,b,c\n")
--- response_body eval
"[{\"line\":2,\"to\":\"1\",\"variables\":{\"" . ("a" x 64) . "\":\"a\",\"1_x\":\"b\",\"名前_2\":\"c\"}}]\n"



=== TEST 23: a repeated header name
--- raw_request eval
[csv("to,name,x,name\n"), csv("to,name,TO,to\n")]
--- response_body eval
["error: line 1, column 4: the column name \"name\" is repeated\n",
 "error: line 1, column 4: the column name \"to\" is repeated\n"]



=== TEST 24: a NUL byte
--- raw_request eval
[csv("to,a\n1,x\x00y\n"), csv("\x00"), csv(cp932("to,氏名\r\n1,山田\r\n2,\x00\r\n"))]
--- response_body eval
["error: line 2: a NUL byte\n", "error: line 1: a NUL byte\n",
 "error: line 3: a NUL byte\n"]



=== TEST 25: bytes that are neither UTF-8 nor CP932: the line where the one that went further stops
--- raw_request eval
[csv("to,a\n1,\xff\n"), csv("\xef\xbb\xbfto,a\r\n1,x\r\n2,\x80\r\n"),
 csv("to,a\n1,x\n2,\x82"), csv("to,a\n1,日本\n2,x\n3,\xa0\n"),
 csv(cp932("to,a\n1,日本\n2,表\n") . "3,\xfd\n"),
 csv("to,a\n1,\xed\xa0\x80\n"), csv("to,a\n1,\xc0\xaf\n")]
--- response_body eval
["error: line 2: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 3: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 3: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 4: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 4: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 2: the file is neither UTF-8 nor Shift_JIS (CP932)\n",
 "error: line 2: the file is neither UTF-8 nor Shift_JIS (CP932)\n"]



=== TEST 26: 16 variable columns are fine, 17 are not
--- raw_request eval
[csv(CORE::join(',', 'to', map { "v$_" } 1 .. 16) . "\n" . CORE::join(',', 0 .. 16) . "\n"),
 csv(CORE::join(',', 'to', map { "v$_" } 1 .. 17) . "\n1\n")]
--- response_body eval
["[{\"line\":2,\"to\":\"0\",\"variables\":{" . CORE::join(',', map { "\"v$_\":\"$_\"" } 1 .. 16) . "}}]\n",
 "error: line 1: more than 16 variable columns\n"]



=== TEST 27: a cell of 500 characters is fine, of 501 is not (unquoted, quoted, with doubled quotes; in the header)
--- raw_request eval
[csv("to,name\n1," . ("あ" x 500) . "\n"),
 csv("to,name\n1," . ("あ" x 501) . "\n"),
 csv("to,name\n1,\"" . ("\"\"" x 500) . "\"\n"),
 csv("to,name\n1,\"" . ("\"\"" x 501) . "\"\n"),
 csv("to,name\n" . ("9" x 501) . ",x\n"),
 csv("to,,name\n1,\"" . ("\"\"" x 2001) . "\",x\n"),
 csv("to," . ("x" x 501) . "\n"),
 csv("to,name\n1," . ("a" x 500) . (" " x 100) . "\n")]
--- response_body eval
["[{\"line\":2,\"to\":\"1\",\"variables\":{\"name\":\"" . ("あ" x 500) . "\"}}]\n",
 "error: line 2, column \"name\": the cell is longer than 500 characters\n",
 "[{\"line\":2,\"to\":\"1\",\"variables\":{\"name\":\"" . ("\\\"" x 500) . "\"}}]\n",
 "error: line 2, column \"name\": the cell is longer than 500 characters\n",
 "error: line 2, column \"to\": the cell is longer than 500 characters\n",
 "error: line 2, column 2: the cell is longer than 500 characters\n",
 "error: line 1, column 2: the cell is longer than 500 characters\n",
 "[{\"line\":2,\"to\":\"1\",\"variables\":{\"name\":\"" . ("a" x 500) . "\"}}]\n"]



=== TEST 28: 100000 rows at most
--- raw_request eval
csv("to\n" . CORE::join('', map { "$_\n" } 1 .. 100001))
--- response_body
error: line 100002: more than 100000 rows
--- timeout: 60



=== TEST 29: 100000 rows are taken
--- raw_request eval
csv("to,n\n" . CORE::join('', map { "$_,$_\n" } 1 .. 100000))
--- response_body_like: ^\[\{"line":2,"to":"1","variables":\{"n":"1"\}\},.*\{"line":100001,"to":"100000","variables":\{"n":"100000"\}\}\]\n\z
--- timeout: 60



=== TEST 30: hostile: too many columns, a megabyte in an unclosed quote, a megabyte of commas in a record, of quotes
--- raw_request eval
[csv("to" . ("," x 300) . "\n"),
 csv("to,a\n1,\"" . ("x\n" x 500000)),
 csv("to,a\n1" . ("," x 1000000) . "\n"),
 csv("to,a\n1,\"" . ("\"" x 1000001) . "\n")]
--- response_body eval
["error: line 1: more than 256 columns\n",
 "error: line 2: a quoted field is not closed\n",
 "error: line 2: more cells than the header has columns (2)\n",
 "error: line 2: a quoted field is not closed\n"]
--- timeout: 10



=== TEST 31: 255 empty columns after the phone are ignored
--- raw_request eval
csv("to" . ("," x 255) . "\n1" . ("," x 255) . "\n")
--- response_body
[{"line":2,"to":"1","variables":{}}]
